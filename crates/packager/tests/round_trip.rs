//! Round trip through independent parsers: every fragment through
//! `mp4-atom`, every manifest through `roxmltree`, checking that sample
//! counts, times and durations are continuous (no gap, no overlap) across
//! fragments and across live to on-demand.

mod common;

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use mediastreams_packager::bmff::{TFRF_UUID, TFXD_UUID};
use mediastreams_packager::layout;
use mp4_atom::{Any, Decode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct C {
    t: u64,
    d: u64,
}

/// (video, audio) chunk lists of a Smooth manifest, and whether it is live.
fn smooth_chunks(xml: &str) -> (Vec<C>, Vec<C>, bool, roxmltree::Document<'_>) {
    let doc = roxmltree::Document::parse(xml).expect("manifest is XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "SmoothStreamingMedia");
    assert_eq!(root.attribute("TimeScale"), Some("10000000"));
    let live = root.attribute("IsLive") == Some("TRUE");
    let mut lists = BTreeMap::new();
    for si in root.children().filter(|n| n.has_tag_name("StreamIndex")) {
        let cs: Vec<C> = si
            .children()
            .filter(|n| n.has_tag_name("c"))
            .map(|c| C { t: c.attribute("t").unwrap().parse().unwrap(), d: c.attribute("d").unwrap().parse().unwrap() })
            .collect();
        assert_eq!(si.attribute("Chunks").unwrap().parse::<usize>().unwrap(), cs.len());
        lists.insert(si.attribute("Type").unwrap().to_owned(), cs);
    }
    let v = lists.remove("video").unwrap();
    // A presentation whose audio never came lists no audio track.
    let a = lists.remove("audio").unwrap_or_default();
    drop(lists);
    // Safe to return the doc: tests only read attributes from it.
    let doc2 = roxmltree::Document::parse(xml).unwrap();
    let _ = doc;
    (v, a, live, doc2)
}

fn contiguous(cs: &[C]) {
    for w in cs.windows(2) {
        assert_eq!(w[0].t + w[0].d, w[1].t, "gap or overlap between {:?} and {:?}", w[0], w[1]);
    }
}

struct Parsed {
    tfdt: u64,
    durations: Vec<u32>,
    sample_count: usize,
    tfxd: (u64, u64),
    tfrf: Option<Vec<(u64, u64)>>,
}

fn uuid_payload<'a>(b: &'a [u8], uuid: &[u8; 16]) -> Option<&'a [u8]> {
    let at = b.windows(16).position(|w| w == uuid)?;
    Some(&b[at + 16..])
}

fn parse_fragment(body: &Bytes) -> Parsed {
    let mut buf: &[u8] = body;
    let moof = match Any::decode(&mut buf).expect("moof decodes") {
        Any::Moof(m) => m,
        other => panic!("expected moof, got {other:?}"),
    };
    let moof_size = body.len() - buf.len();
    let mdat = match Any::decode(&mut buf).expect("mdat decodes") {
        Any::Mdat(m) => m,
        other => panic!("expected mdat, got {other:?}"),
    };
    assert!(buf.is_empty(), "nothing after mdat");
    assert_eq!(moof.traf.len(), 1);
    let traf = &moof.traf[0];
    let trun = &traf.trun[0];
    assert_eq!(trun.data_offset, Some(moof_size as i32 + 8), "data_offset points at the mdat payload");
    let sizes: u32 = trun.entries.iter().map(|e| e.size.unwrap()).sum();
    assert_eq!(sizes as usize, mdat.data.len(), "sample sizes cover the mdat");
    let tfxd = uuid_payload(body, &TFXD_UUID).expect("tfxd");
    assert_eq!(tfxd[0], 1, "tfxd version 1");
    let tfxd = (u64::from_be_bytes(tfxd[4..12].try_into().unwrap()), u64::from_be_bytes(tfxd[12..20].try_into().unwrap()));
    let tfrf = uuid_payload(body, &TFRF_UUID).map(|p| {
        assert_eq!(p[0], 1, "tfrf version 1");
        let n = p[4] as usize;
        (0..n)
            .map(|i| {
                let e = &p[5 + 16 * i..];
                (u64::from_be_bytes(e[0..8].try_into().unwrap()), u64::from_be_bytes(e[8..16].try_into().unwrap()))
            })
            .collect()
    });
    Parsed {
        tfdt: traf.tfdt.as_ref().expect("tfdt").base_media_decode_time,
        durations: trun.entries.iter().map(|e| e.duration.unwrap()).collect(),
        sample_count: trun.entries.len(),
        tfxd,
        tfrf,
    }
}

#[test]
fn live_then_on_demand_is_continuous_everywhere() {
    let mut p = common::presentation(true, true);
    let run = common::run(&mut p, 60, 0, true);
    assert!(run.keyframe_requests >= 25, "a keyframe is requested for each fragment when the publisher sends none");

    let mut store: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut written: HashSet<String> = HashSet::new();
    let mut live_manifests = 0;
    let mut live_writes: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_live: Option<(Vec<C>, Vec<C>)> = None;
    let mut final_manifest = None;
    for o in &run.objects {
        if o.key == layout::SMOOTH_MANIFEST {
            let xml = std::str::from_utf8(&o.body).unwrap();
            let (v, a, live, _) = smooth_chunks(xml);
            contiguous(&v);
            contiguous(&a);
            // A manifest only lists fragments already written.
            for c in &v {
                assert!(
                    written.contains(&layout::fragment_key(mediastreams_packager::TrackType::Video, 1_000_000, c.t)),
                    "listed before written: video {c:?}"
                );
            }
            for c in &a {
                assert!(written.contains(&layout::fragment_key(mediastreams_packager::TrackType::Audio, 128_000, c.t)));
            }
            if live {
                assert_eq!(o.cache_control, layout::CACHE_LIVE_MANIFEST);
                live_manifests += 1;
                // Live manifests grow at the end and slide at the start
                // (DVR window of 30 s here), never rewriting a fragment.
                if let Some((pv, pa)) = &last_live {
                    for (prev, now) in [(pv, &v), (pa, &a)] {
                        if prev.is_empty() {
                            continue;
                        }
                        let from = prev.iter().position(|c| c == &now[0]).expect("the window starts inside the previous list");
                        assert!(now.starts_with(&prev[from..]), "the list only grows past the window start");
                    }
                }
                let span = v.last().unwrap().t + v.last().unwrap().d - v[0].t;
                assert!(span <= 300_000_000 + 21_000_000, "live list spans the DVR window: {span}");
                last_live = Some((v, a));
            } else {
                assert!(xml.contains("Duration=\""));
                assert!(!xml.contains("IsLive"));
                assert_eq!(o.cache_control, layout::CACHE_FINAL_MANIFEST);
                final_manifest = Some((v, a, xml.to_owned()));
            }
        }
        // A live manifest is written only when it changes (the final
        // ones are all written once more).
        if o.cache_control == layout::CACHE_LIVE_MANIFEST {
            assert_ne!(store.get(&o.key), Some(&o.body), "{} written again unchanged", o.key);
            *live_writes.entry(o.key.clone()).or_insert(0) += 1;
        }
        written.insert(o.key.clone());
        store.insert(o.key.clone(), o.body.clone());
    }
    assert!(live_manifests > 50);
    // Every fragment (video or audio) changes the Smooth manifest and the
    // MPD, only its own track's HLS playlist, and not the multivariant one.
    let hls_video = live_writes.iter().find(|(k, _)| k.starts_with("hls/video-")).map(|(_, n)| *n).unwrap();
    let hls_audio = live_writes.iter().find(|(k, _)| k.starts_with("hls/audio-")).map(|(_, n)| *n).unwrap();
    assert_eq!(live_writes[layout::HLS_MULTIVARIANT], 1, "{live_writes:?}");
    assert_eq!(live_writes[layout::SMOOTH_MANIFEST], live_writes[layout::DASH_MANIFEST], "{live_writes:?}");
    assert!(hls_video < live_manifests && hls_audio < live_manifests, "{live_writes:?}");
    assert!(hls_video + hls_audio >= live_manifests, "every change reaches one playlist: {live_writes:?}");
    let (fv, fa, xml) = final_manifest.expect("a final manifest");
    let (lv, la) = last_live.unwrap();
    let vpos = fv.iter().position(|c| c == &lv[0]).unwrap();
    let apos = fa.iter().position(|c| c == &la[0]).unwrap();
    assert!(fv[vpos..].starts_with(&lv) && fa[apos..].starts_with(&la), "the on-demand lists extend the live ones");
    assert_eq!(fv[0].t, 0, "the on-demand list starts at the beginning, not the DVR window");
    assert_eq!(fa[0].t, fv[0].t, "audio (12 ms later) starts with the video: no gap at the start");
    assert!(fv.len() >= 28 && fv.len() <= 31, "60 s in ~2 s fragments: {}", fv.len());
    // Duration covers the whole presentation.
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let duration: u64 = doc.root_element().attribute("Duration").unwrap().parse().unwrap();
    let start = fv[0].t.min(fa[0].t);
    let end = (fv.last().unwrap().t + fv.last().unwrap().d).max(fa.last().unwrap().t + fa.last().unwrap().d);
    assert_eq!(duration, end - start);
    assert!((599_000_000..=601_500_000).contains(&duration), "{duration}");

    // Every fragment parses, and agrees with the manifest and its neighbours.
    let mut video_samples = 0;
    for (track, bitrate, list) in
        [(mediastreams_packager::TrackType::Video, 1_000_000, &fv), (mediastreams_packager::TrackType::Audio, 128_000, &fa)]
    {
        for (i, c) in list.iter().enumerate() {
            let key = layout::fragment_key(track, bitrate, c.t);
            let f = parse_fragment(&store[&key]);
            assert_eq!(f.tfdt, c.t);
            assert_eq!(f.tfxd, (c.t, c.d));
            assert_eq!(f.durations.iter().map(|&d| u64::from(d)).sum::<u64>(), c.d, "sample durations sum to the fragment's");
            match list.get(i + 1) {
                // Written as it closed: the next one's start, and this
                // one's duration as the next one's expected duration.
                Some(next) => assert_eq!(f.tfrf, Some(vec![(next.t, c.d)]), "tfrf announces the next fragment"),
                None => assert_eq!(
                    f.tfrf,
                    Some(vec![]),
                    "the last fragment announces nothing (an empty tfrf: live players still reading it need one)"
                ),
            }
            if track == mediastreams_packager::TrackType::Video {
                video_samples += f.sample_count;
                if i + 1 < list.len() {
                    assert!(c.d >= 20_000_000 && c.d <= 21_500_000, "video fragment {i} is {} long", c.d);
                }
            }
        }
    }
    assert_eq!(video_samples, 60 * 30, "every frame in exactly one fragment");
    // Audio cuts follow video cuts within one AAC frame.
    for v in &fv[1..] {
        let nearest = fa.iter().map(|a| a.t.abs_diff(v.t)).min().unwrap();
        assert!(nearest <= 213_334, "audio boundary within a frame of video boundary {}", v.t);
    }

    // DASH lists the same timeline, statically at the end.
    let mpd = std::str::from_utf8(&store[layout::DASH_MANIFEST]).unwrap();
    let doc = roxmltree::Document::parse(mpd).unwrap();
    assert_eq!(doc.root_element().attribute("type"), Some("static"));
    let video_s: Vec<C> = doc
        .descendants()
        .filter(|n| n.has_tag_name("AdaptationSet") && n.attribute("contentType") == Some("video"))
        .flat_map(|a| a.descendants().filter(|n| n.has_tag_name("S")).collect::<Vec<_>>())
        .map(|s| C { t: s.attribute("t").unwrap().parse().unwrap(), d: s.attribute("d").unwrap().parse().unwrap() })
        .collect();
    assert_eq!(video_s, fv);
    // HLS: one EXTINF per fragment, ENDLIST, and the init segments exist.
    let hls = std::str::from_utf8(&store["hls/video-1000000.m3u8"]).unwrap();
    assert_eq!(hls.matches("#EXTINF:").count(), fv.len());
    assert!(hls.ends_with("#EXT-X-ENDLIST\n"));
    assert!(hls.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
    for k in [
        layout::init_key(mediastreams_packager::TrackType::Video, 1_000_000),
        layout::init_key(mediastreams_packager::TrackType::Audio, 128_000),
    ] {
        let body = store[&k].clone();
        let mut b: &[u8] = &body;
        assert!(matches!(Any::decode(&mut b).unwrap(), Any::Ftyp(_)));
        assert!(matches!(Any::decode(&mut b).unwrap(), Any::Moov(_)), "{k}: moov decodes");
    }
    let main = std::str::from_utf8(&store[layout::HLS_MULTIVARIANT]).unwrap();
    assert!(main.contains("CODECS=\"avc1.42C00D,mp4a.40.2\"") && main.contains("RESOLUTION=320x240"), "{main}");
}

#[test]
fn tracks_start_together_whichever_comes_first() {
    use mediastreams_packager::{AudioFrame, VideoSample};
    // Audio first, video 30 ms later (its first frame arrives before any
    // audio reaches the packager, as AAC encoding lags).
    let mut p = common::presentation(false, false);
    p.push_video(VideoSample { time: 946_000, keyframe: true, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) }).unwrap();
    p.push_audio(AudioFrame { time: 640_000, data: Bytes::from_static(&[1]) }).unwrap();
    for i in 1..200u64 {
        let _ = p.push_video(VideoSample {
            time: 946_000 + (i * 333_333) as i64,
            keyframe: i % 60 == 0,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
        });
        let _ = p.push_audio(AudioFrame { time: 640_000 + (i * 213_333) as i64, data: Bytes::from_static(&[1]) });
    }
    p.finish();
    let (v, a) = p.published();
    assert_eq!(v[0].start, 640_000);
    assert_eq!(a[0].start, 640_000);
    // Video first, audio 100 ms later.
    let mut p = common::presentation(false, false);
    p.push_video(VideoSample { time: 500_000, keyframe: true, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) }).unwrap();
    p.push_video(VideoSample { time: 833_333, keyframe: false, data: Bytes::from_static(&[0, 0, 0, 1, 0x41]) }).unwrap();
    p.push_audio(AudioFrame { time: 1_500_000, data: Bytes::from_static(&[1]) }).unwrap();
    p.finish();
    let (v, a) = p.published();
    assert_eq!((v[0].start, a[0].start), (500_000, 500_000));
}

/// The last picture lasts until the audio ends: both tracks, and so every
/// manifest's duration, end at the same time, and a player that reaches
/// the end of one has reached the end of the other.
#[test]
fn tracks_end_together() {
    for seconds in [4u64, 7, 8] {
        let mut p = common::presentation(true, true);
        let run = common::run(&mut p, seconds, 2, true);
        let (v, a) = p.published();
        let (ve, ae) = (v.last().unwrap().end(), a.last().unwrap().end());
        assert_eq!(ve, ae, "{seconds} s: video ends at {ve}, audio at {ae}");
        let final_smooth = run.objects.iter().rfind(|o| o.key == layout::SMOOTH_MANIFEST).unwrap();
        let (vc, ac, live, doc) = smooth_chunks(std::str::from_utf8(&final_smooth.body).unwrap());
        assert!(!live);
        let start = vc[0].t.min(ac[0].t);
        let duration: u64 = doc.root_element().attribute("Duration").unwrap().parse().unwrap();
        assert_eq!(duration, ve - start, "{seconds} s: Duration is where both tracks end");
    }
}

#[test]
fn a_publisher_that_honours_no_request_still_gets_bounded_fragments() {
    let mut p = common::presentation(false, false);
    // Keyframe only every 10 s and requests ignored: emulate by a publisher
    // whose responses never come (gop 10 s, but the helper answers requests;
    // so drive it by hand).
    let mut objects = Vec::new();
    for v in 0..(30 * 30u64) {
        let keyframe = v % 300 == 0;
        let out = p
            .push_video(mediastreams_packager::VideoSample {
                time: (v * 10_000_000 / 30) as i64,
                keyframe,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
            })
            .unwrap();
        objects.extend(out.objects);
    }
    objects.extend(p.finish().objects);
    let (v, _) = p.published();
    assert!(v.iter().all(|c| c.duration <= 60_000_000 + 333_334), "bounded by three targets: {v:?}");
    assert!(v.len() >= 5);
    contiguous(&v.iter().map(|c| C { t: c.start, d: c.duration }).collect::<Vec<_>>());
}

/// Video at 30 fps with a keyframe every 2 s, from frame `from`.
fn frames(from: u64, to: u64, origin: u64) -> impl Iterator<Item = mediastreams_packager::VideoSample> {
    (from..to).map(move |v| mediastreams_packager::VideoSample {
        time: (origin + v * 10_000_000 / 30) as i64,
        keyframe: v % 60 == 0,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
    })
}

fn video_fragments(objects: &[mediastreams_packager::PublishedObject]) -> Vec<(String, Parsed)> {
    objects.iter().filter(|o| o.key.contains("Fragments(video=")).map(|o| (o.key.clone(), parse_fragment(&o.body))).collect()
}

#[test]
fn a_fragment_is_published_as_the_next_one_starts_and_a_session_end_holds_the_last() {
    let mut p = common::presentation(true, true);
    let mut published_at = Vec::new();
    let mut fragments = Vec::new();
    for (v, s) in frames(0, 150, 0).enumerate() {
        let out = p.push_video(s).unwrap();
        let f = video_fragments(&out.objects);
        if !f.is_empty() {
            published_at.push(v);
        }
        fragments.extend(f);
    }
    // The keyframes at 2 s and 4 s close the fragments before them, which
    // are written then, not when their successors close.
    assert_eq!(published_at, [60, 120]);
    assert_eq!(fragments[0].1.tfxd, (0, 20_000_000));
    assert_eq!(fragments[0].1.tfrf, Some(vec![(20_000_000, 20_000_000)]), "the next start, and this duration as its expected one");
    assert_eq!(fragments[1].1.tfrf, Some(vec![(40_000_000, 20_000_000)]));
    // The publisher leaves: the fragment it was sending closes, but whether
    // another follows is not known, so it waits.
    let ended = p.end_session();
    assert!(video_fragments(&ended.objects).is_empty(), "held at the session's end");
    // A new session continues the timeline: its first fragment, once
    // closed, is announced by the held one.
    let resume = p.end_time();
    let mut objects = Vec::new();
    for s in frames(0, 61, resume) {
        objects.extend(p.push_video(s).unwrap().objects);
    }
    let f = video_fragments(&objects);
    assert_eq!(f.len(), 2, "the held fragment, then the new session's first: {:?}", f.iter().map(|(k, _)| k).collect::<Vec<_>>());
    assert_eq!(f[0].1.tfxd.0, 40_000_000);
    assert_eq!(f[0].1.tfrf, Some(vec![(resume, 20_000_000)]), "announces the next session's first fragment exactly");
    assert_eq!(f[1].1.tfxd, (resume, 20_000_000));
    // The end: the last fragment announces nothing.
    let last = video_fragments(&p.finish().objects);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].1.tfrf, Some(vec![]));
}

#[test]
fn reconnect_continues_the_timeline() {
    let mut p = common::presentation(false, false);
    let first = common::run(&mut p, 10, 2, false);
    let mut objects = first.objects;
    objects.extend(p.end_session().objects);
    // A new session's clock lands a little after the end (here 1.6 ms, as
    // when the audio ran longer than the video): video stays contiguous.
    let resume = p.end_time() + 15_844;
    // The second session's samples start where the first ended.
    for v in 0..300u64 {
        let out = p
            .push_video(mediastreams_packager::VideoSample {
                time: resume as i64 + (v * 10_000_000 / 30) as i64,
                keyframe: v % 60 == 0,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            })
            .unwrap();
        objects.extend(out.objects);
    }
    objects.extend(p.finish().objects);
    let (v, _) = p.published();
    contiguous(&v.iter().map(|c| C { t: c.start, d: c.duration }).collect::<Vec<_>>());
    let keys: HashSet<&str> = objects.iter().filter(|o| o.key.contains("Fragments")).map(|o| o.key.as_str()).collect();
    let count = objects.iter().filter(|o| o.key.contains("Fragments")).count();
    assert_eq!(keys.len(), count, "no fragment written twice");
}

#[test]
fn video_levels_share_one_timeline() {
    use mediastreams_packager::TrackType::{Audio, Video};
    const LEVELS: [u32; 2] = [1_000_000, 300_000];
    let mut p = common::two_level_presentation();
    assert_eq!(p.video_levels(), 2);
    // The second encoding's clock is 5 ms late and its packets arrive
    // 120 ms after the first's.
    let run = common::run_two_levels(&mut p, 30, 50_000, 1_200_000);
    assert!(run.keyframe_requests >= 12);
    let mut store: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut live_manifests = 0;
    let mut final_xml = None;
    for o in &run.objects {
        if o.key == layout::SMOOTH_MANIFEST {
            let xml = std::str::from_utf8(&o.body).unwrap();
            let (v, a, live, doc) = smooth_chunks(xml);
            let video = doc.descendants().find(|n| n.has_tag_name("StreamIndex") && n.attribute("Type") == Some("video")).unwrap();
            let bitrates: Vec<u32> = video
                .children()
                .filter(|n| n.has_tag_name("QualityLevel"))
                .map(|q| q.attribute("Bitrate").unwrap().parse().unwrap())
                .collect();
            assert_eq!(bitrates, LEVELS);
            assert_eq!(video.attribute("QualityLevels"), Some("2"));
            // Listed only once every level has written it.
            for c in &v {
                for b in LEVELS {
                    assert!(store.contains_key(&layout::fragment_key(Video, b, c.t)), "listed before level {b} wrote {c:?}");
                }
            }
            for c in &a {
                assert!(store.contains_key(&layout::fragment_key(Audio, 128_000, c.t)));
            }
            if live {
                live_manifests += 1;
            } else {
                final_xml = Some(xml.to_owned());
            }
        }
        assert!(!store.contains_key(&o.key) || !o.key.contains("Fragments"), "written twice: {}", o.key);
        store.insert(o.key.clone(), o.body.clone());
    }
    assert!(live_manifests >= 20);
    let xml = final_xml.expect("a final manifest");
    let (fv, _, _, _) = smooth_chunks(&xml);
    contiguous(&fv);
    assert!(fv.len() >= 14 && fv.len() <= 16, "30 s in ~2 s fragments: {}", fv.len());
    for b in LEVELS {
        let mut samples = 0;
        for (i, c) in fv.iter().enumerate() {
            let body = &store[&layout::fragment_key(Video, b, c.t)];
            let f = parse_fragment(body);
            assert_eq!((f.tfdt, f.tfxd), (c.t, (c.t, c.d)), "level {b} fragment {i}");
            assert_eq!(f.durations.iter().map(|&d| u64::from(d)).sum::<u64>(), c.d, "level {b} fragment {i} fills its span");
            assert!(f.durations.iter().all(|&d| d > 0));
            match fv.get(i + 1) {
                Some(next) => assert_eq!(f.tfrf, Some(vec![(next.t, c.d)])),
                None => assert_eq!(f.tfrf, Some(vec![])),
            }
            // Every fragment of every level starts with a keyframe (the
            // encodings' keyframes come together): each can start playback
            // or a level switch. The keyframe flag is the sample's NAL type.
            let mut buf: &[u8] = body;
            let _moof = Any::decode(&mut buf).unwrap();
            let mdat = match Any::decode(&mut buf).unwrap() {
                Any::Mdat(m) => m,
                other => panic!("{other:?}"),
            };
            assert_eq!(mdat.data[4], 0x65, "level {b} fragment {i} starts with an IDR");
            assert_eq!(usize::from(mdat.data[6]), LEVELS.iter().position(|&l| l == b).unwrap(), "level {b} carries its own samples");
            samples += f.sample_count;
        }
        assert_eq!(samples, 30 * 30, "level {b}: every frame in exactly one fragment");
        assert!(store.contains_key(&layout::init_key(Video, b)), "level {b} has an initialization segment");
        assert!(store.contains_key(&format!("hls/video-{b}.m3u8")));
    }
    let mpd = std::str::from_utf8(&store[layout::DASH_MANIFEST]).unwrap();
    assert_eq!(mpd.matches("<Representation id=\"video-").count(), 2, "{mpd}");
    let main = std::str::from_utf8(&store[layout::HLS_MULTIVARIANT]).unwrap();
    assert_eq!(main.matches("#EXT-X-STREAM-INF").count(), 2, "{main}");
}

#[test]
fn a_paused_level_does_not_hold_the_others_back() {
    use mediastreams_packager::VideoSample;
    let mut p = common::two_level_presentation();
    let mut objects = Vec::new();
    // The second level sends 3 s, then nothing (the browser paused it).
    for v in 0..(20 * 30u64) {
        let time = (v * 10_000_000 / 30) as i64;
        let keyframe = v % 60 == 0;
        objects.extend(p.push_video(VideoSample { time, keyframe, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) }).unwrap().objects);
        if v < 90 {
            objects.extend(
                p.push_video_level(1, VideoSample { time, keyframe, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) }).unwrap().objects,
            );
        }
    }
    let live_lists: Vec<usize> = objects
        .iter()
        .filter(|o| o.key == layout::SMOOTH_MANIFEST)
        .map(|o| smooth_chunks(std::str::from_utf8(&o.body).unwrap()).0.len())
        .collect();
    assert!(*live_lists.last().unwrap() >= 5, "the live list grows while a level is paused: {live_lists:?}");
    objects.extend(p.finish().objects);
    let (v, _) = p.published();
    assert_eq!(v.len(), 10);
    // Every fragment listed exists for both levels: the paused level's
    // spans show its last keyframe (one sample lasting the whole span).
    for c in v {
        for level in [1_000_000, 300_000] {
            let key = layout::fragment_key(mediastreams_packager::TrackType::Video, level, c.start);
            let body = &objects.iter().find(|o| o.key == key).unwrap_or_else(|| panic!("{key} is listed but not written")).body;
            if level == 300_000 && c.start >= 40_000_000 {
                let f = parse_fragment(body);
                assert_eq!(f.sample_count, 1, "{key}: the last keyframe alone");
                assert_eq!(f.durations, vec![c.duration as u32], "{key}: for the whole span");
                assert!(body.ends_with(&[0, 0, 0, 1, 0x65]), "{key}: its last keyframe");
            }
        }
    }
    assert_eq!(
        p.push_video_level(2, VideoSample { time: 0, keyframe: true, data: Bytes::new() }),
        Err(mediastreams_packager::PackagerError::Finished)
    );
}

#[test]
fn levels_are_checked() {
    use mediastreams_packager::{AudioTrackConfig, PackagerError, Presentation, VideoSample, VideoTrackConfig};
    let video = VideoTrackConfig { bitrate: 1, sps: common::sps(), pps: Bytes::from_static(common::PPS) };
    let audio = AudioTrackConfig { codec: mediastreams_packager::AudioCodec::Aac, bitrate: 128_000, sample_rate: 48_000, channels: 2 };
    assert_eq!(Presentation::with_video_levels(common::config(false, false), vec![], audio).unwrap_err(), PackagerError::NoVideoLevel);
    assert_eq!(
        Presentation::with_video_levels(common::config(false, false), vec![video.clone(), video.clone()], audio).unwrap_err(),
        PackagerError::DuplicateBitrate(1)
    );
    let mut p = Presentation::new(common::config(false, false), video, audio).unwrap();
    assert_eq!(p.push_video_level(1, VideoSample { time: 0, keyframe: true, data: Bytes::new() }), Err(PackagerError::NoSuchLevel(1)));
}

#[test]
fn a_presentation_whose_packager_died_is_finished_from_storage() {
    use mediastreams_packager::TrackType;
    use mediastreams_packager::recovery::{Formats, StoredTrack, final_manifests, fragment_times, parse_fragment_key, parse_live_manifest};
    // Two video levels, a 30 s DVR window, 40 s published, then the node
    // dies: no finish().
    let mut p = common::two_level_presentation();
    let mut store: BTreeMap<String, Bytes> = BTreeMap::new();
    let run = {
        let mut objects = Vec::new();
        for v in 0..(40 * 30u64) {
            let time = (v * 10_000_000 / 30) as i64;
            let keyframe = v % 60 == 0;
            for level in 0..2 {
                let data = Bytes::from_static(&[0, 0, 0, 1, 0x65]);
                objects.extend(p.push_video_level(level, mediastreams_packager::VideoSample { time, keyframe, data }).unwrap().objects);
            }
        }
        for a in 0..(40 * 48_000 / 1024u64) {
            let time = (a * 1024 * 10_000_000 / 48_000) as i64;
            objects.extend(p.push_audio(mediastreams_packager::AudioFrame { time, data: Bytes::from_static(&[1, 2]) }).unwrap().objects);
        }
        objects
    };
    for o in run {
        store.insert(o.key, o.body);
    }
    let (video_published, audio_published) = p.published();
    let live = parse_live_manifest(std::str::from_utf8(&store[layout::SMOOTH_MANIFEST]).unwrap()).unwrap();
    assert_eq!(live.video.iter().map(|l| l.bitrate).collect::<Vec<_>>(), [1_000_000, 300_000]);
    assert!(live.video_chunks.len() < video_published.len(), "some fragments are outside the live window");
    let mut tracks = [StoredTrack::default(), StoredTrack::default()];
    let mut last: [Option<(u64, String)>; 2] = [None, None];
    for key in store.keys() {
        if let Some((track, bitrate, t)) = parse_fragment_key(key) {
            let i = usize::from(track == TrackType::Audio);
            let first_level = if track == TrackType::Video { 1_000_000 } else { 128_000 };
            if bitrate == first_level {
                tracks[i].starts.push(t);
                if last[i].as_ref().is_none_or(|(lt, _)| t > *lt) {
                    last[i] = Some((t, key.clone()));
                }
            }
        }
    }
    for i in 0..2 {
        let (_, key) = last[i].clone().unwrap();
        tracks[i].last_duration = fragment_times(&store[&key]).map(|(_, d)| d);
    }
    let objects = final_manifests(&live, &tracks[0], &tracks[1], Formats { dash: true, hls: true }, 20_000_000);
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "smooth.ism/Manifest",
            "dash/manifest.mpd",
            "hls/main.m3u8",
            "hls/audio-128000.m3u8",
            "hls/video-1000000.m3u8",
            "hls/video-300000.m3u8"
        ]
    );
    let (v, a, is_live, _) = smooth_chunks(std::str::from_utf8(&objects[0].body).unwrap());
    assert!(!is_live);
    let as_c = |cs: &[mediastreams_packager::manifest::Chunk]| cs.iter().map(|c| C { t: c.start, d: c.duration }).collect::<Vec<_>>();
    assert_eq!(v, as_c(video_published), "every published video fragment, with its exact times");
    assert_eq!(a, as_c(audio_published));
    // Every listed fragment exists for every level.
    for c in &v {
        for b in [1_000_000, 300_000] {
            assert!(store.contains_key(&layout::fragment_key(TrackType::Video, b, c.t)));
        }
    }
}

/// A publisher whose audio never comes: the live manifests appear once
/// three video fragments are listed, without an audio track, and the
/// manifests rebuilt from storage (a dead node's) leave it out too.
#[test]
fn a_presentation_without_audio_lists_no_audio_track_live_or_recovered() {
    use mediastreams_packager::recovery::{Formats, StoredTrack, final_manifests, parse_live_manifest};
    let mut p = common::presentation(false, false);
    let mut objects = Vec::new();
    for sample in frames(0, 12 * 30, 0) {
        objects.extend(p.push_video(sample).unwrap().objects);
    }
    let live: Vec<&str> =
        objects.iter().filter(|o| o.key == layout::SMOOTH_MANIFEST).map(|o| std::str::from_utf8(&o.body).unwrap()).collect();
    let first = smooth_chunks(live[0]);
    assert_eq!((first.0.len(), first.1.len()), (3, 0), "the first live manifest waits for three video fragments");
    assert!(live.iter().all(|m| !m.contains("Type=\"audio\"")), "no audio track while live");
    let parsed = parse_live_manifest(live.last().unwrap()).unwrap();
    let (v, _) = p.published();
    let video = StoredTrack { starts: v.iter().map(|c| c.start).collect(), last_duration: None };
    let recovered = final_manifests(&parsed, &video, &StoredTrack::default(), Formats { dash: true, hls: true }, 20_000_000);
    for o in &recovered {
        let body = std::str::from_utf8(&o.body).unwrap();
        assert!(!body.contains("audio"), "{}: {body}", o.key);
    }
    let smooth = recovered.iter().find(|o| o.key == layout::SMOOTH_MANIFEST).unwrap();
    assert_eq!(smooth_chunks(std::str::from_utf8(&smooth.body).unwrap()).0.len(), v.len());
}

/// The live MPD sets players' clocks from the media origin's millisecond
/// time first (`layout::TIME_PATH`), then from the MPD's own `Date` (to the
/// second); the final MPD is static and needs neither.
#[test]
fn the_live_mpd_names_the_origins_clock_then_its_date() {
    let mut p = common::presentation(true, false);
    let mut mpds = Vec::new();
    for sample in frames(0, 8 * 30, 0) {
        mpds.extend(p.push_video(sample).unwrap().objects.into_iter().filter(|o| o.key.ends_with(".mpd")));
    }
    let live = String::from_utf8(mpds.last().expect("a live MPD").body.to_vec()).unwrap();
    let timings: Vec<&str> = live.lines().map(str::trim).filter(|l| l.starts_with("<UTCTiming")).collect();
    assert_eq!(
        timings,
        [
            format!("<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-xsdate:2014\" value=\"{}\"/>", layout::TIME_PATH).as_str(),
            "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"manifest.mpd\"/>",
        ],
        "{live}"
    );
    // After the Period, as the MPD schema orders them (ISO/IEC 23009-1 5.3.1.3).
    assert!(live.find("</Period>") < live.find("<UTCTiming"), "{live}");
    let last = p.finish().objects.into_iter().find(|o| o.key.ends_with(".mpd")).expect("the final MPD");
    let last = String::from_utf8(last.body.to_vec()).unwrap();
    assert!(last.contains("type=\"static\"") && !last.contains("UTCTiming"), "{last}");
}

/// Every start a live fragment announces (`tfrf`) is a fragment that gets
/// written: dash.js learns of live Smooth fragments from `tfrf` alone and
/// would ask for an announced one forever. Here the publisher's frames
/// stop twice (a network outage, then a longer one): 3.5 s, then 6.5 s,
/// longer than the longest fragment (6 s), which cuts the fragment at
/// once and announces the frame after the gap as the next start.
#[test]
fn every_announced_fragment_is_written_even_across_gaps() {
    let mut p = common::presentation(false, false);
    let mut objects = Vec::new();
    let mut push = |p: &mut mediastreams_packager::Presentation, time: u64, keyframe: bool| {
        let s = mediastreams_packager::VideoSample { time: time as i64, keyframe, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) };
        objects.extend(p.push_video(s).unwrap().objects);
    };
    let frame = 10_000_000 / 30;
    let mut t = 0;
    for v in 0..90u64 {
        t = v * frame;
        push(&mut p, t, v % 60 == 0);
    }
    t += 35_000_000;
    push(&mut p, t, false);
    t += 65_000_000;
    for v in 0..90u64 {
        push(&mut p, t + v * frame, v % 60 == 0);
    }
    objects.extend(p.finish().objects);
    let fragments = video_fragments(&objects);
    let written: HashSet<u64> = fragments.iter().map(|(_, f)| f.tfdt).collect();
    for (key, f) in &fragments {
        assert!(key.ends_with(&format!("Fragments(video={})", f.tfdt)), "{key} is named after its tfdt");
        for (next, _) in f.tfrf.iter().flatten() {
            assert!(written.contains(next), "{key} announces {next}, which is never written (written: {written:?})");
        }
    }
}

/// A presentation whose audio is Opus (a stream without a Smooth output):
/// its packets are placed by the duration their TOC says, the DASH and
/// HLS views name `opus`, the initialization segment has an `Opus` entry
/// with its `dOps`, and the Smooth index (FourCC `Opus`) reads back as the
/// same track, live and when finished from storage. A packet that breaks
/// RFC 6716 is refused, not stored.
#[test]
fn an_opus_presentation_round_trips() {
    use mediastreams_packager::recovery::{Formats, StoredTrack, audio_track, final_manifests, parse_live_manifest};
    use mediastreams_packager::{AudioCodec, AudioFrame, AudioTrackConfig, Presentation, TrackType, VideoTrackConfig};
    let opus = AudioTrackConfig { codec: AudioCodec::Opus, bitrate: 32_000, sample_rate: 48_000, channels: 1 };
    let mut p = Presentation::new(
        common::config(true, true),
        VideoTrackConfig { bitrate: 1_000_000, sps: common::sps(), pps: Bytes::from_static(common::PPS) },
        opus,
    )
    .unwrap();
    let mut objects = Vec::new();
    let seconds = 7u64;
    // 20 ms SILK packets, and one of 60 ms (code 3, three frames) each second.
    let mut audio_time = 0u64;
    let mut packets = Vec::new();
    while audio_time < seconds * 10_000_000 {
        let long = packets.len() % 50 == 49;
        let (data, samples) = if long { (vec![(9 << 3) | 3, 3, 1, 1, 1], 2880) } else { (vec![9 << 3, 7, 7], 960) };
        packets.push((audio_time as i64, Bytes::from(data)));
        audio_time += samples * 10_000_000 / 48_000;
    }
    let mut packets = packets.into_iter().peekable();
    for sample in frames(0, seconds * 30, 0) {
        while let Some((t, _)) = packets.peek()
            && *t <= sample.time
        {
            let (time, data) = packets.next().unwrap();
            objects.extend(p.push_audio(AudioFrame { time, data }).unwrap().objects);
        }
        objects.extend(p.push_video(sample).unwrap().objects);
    }
    for (time, data) in packets {
        objects.extend(p.push_audio(AudioFrame { time, data }).unwrap().objects);
    }
    // Broken: code 1 with an odd payload.
    let t = p.end_time() as i64;
    assert!(p.push_audio(AudioFrame { time: t, data: Bytes::from_static(&[(9 << 3) | 1, 1, 2, 3]) }).is_err());
    let live_smooth = objects.iter().rev().find(|o| o.key == layout::SMOOTH_MANIFEST).unwrap().body.clone();
    objects.extend(p.finish().objects);
    let last = |key: &str| std::str::from_utf8(&objects.iter().rev().find(|o| o.key == key).unwrap().body).unwrap().to_owned();

    let smooth = last(layout::SMOOTH_MANIFEST);
    assert!(smooth.contains("Bitrate=\"32000\" FourCC=\"Opus\" SamplingRate=\"48000\" Channels=\"1\""), "{smooth}");
    let (_, a, _, _) = smooth_chunks(&smooth);
    contiguous(&a);
    // Every packet's duration counts: 20 ms and 60 ms packets, no drift.
    let (_, audio_published) = p.published();
    let total: u64 = audio_published.iter().map(|c| c.duration).sum();
    assert_eq!(total, audio_time, "the audio track lasts what was pushed");
    assert!(last(layout::DASH_MANIFEST).contains("codecs=\"opus\" audioSamplingRate=\"48000\""));
    let main = last(layout::HLS_MULTIVARIANT);
    assert!(main.contains(",opus\""), "{main}");
    let init = &objects.iter().find(|o| o.key == layout::init_key(TrackType::Audio, 32_000)).unwrap().body;
    assert!(init.windows(4).any(|w| w == b"dOps") && !init.windows(4).any(|w| w == b"esds"));

    // The index reads back as the same track, live and from storage.
    let live = parse_live_manifest(std::str::from_utf8(&live_smooth).unwrap()).unwrap();
    assert_eq!(audio_track(&live), Some(opus));
    assert_eq!(live.audio[0].codecs, "opus");
    let (v, a) = p.published();
    let video = StoredTrack { starts: v.iter().map(|c| c.start).collect(), last_duration: v.last().map(|c| c.duration) };
    let audio = StoredTrack { starts: a.iter().map(|c| c.start).collect(), last_duration: a.last().map(|c| c.duration) };
    let recovered = final_manifests(&live, &video, &audio, Formats { dash: true, hls: true }, 20_000_000);
    let body = |key: &str| std::str::from_utf8(&recovered.iter().find(|o| o.key == key).unwrap().body).unwrap().to_owned();
    assert!(body(layout::DASH_MANIFEST).contains("codecs=\"opus\""));
    assert!(body(layout::SMOOTH_MANIFEST).contains("FourCC=\"Opus\""));
    assert!(body(layout::HLS_MULTIVARIANT).contains(",opus\""));
}

/// A following level the publisher pauses and resumes mid-GOP: the spans
/// it sent nothing for show its last keyframe, and so do its predicted
/// frames until its next keyframe (they refer to pictures the decoder
/// never had); the packager asks for that keyframe. From it on, the
/// level's own pictures are written again.
#[test]
fn a_level_resumed_mid_gop_shows_its_last_keyframe_until_its_next() {
    use mediastreams_packager::VideoSample;
    let mut p = common::two_level_presentation();
    let mut objects = Vec::new();
    let mut requested = false;
    for v in 0..(12 * 30u64) {
        let time = (v * 10_000_000 / 30) as i64;
        let keyframe = v % 60 == 0;
        let data = |level: u8| Bytes::from(vec![0, 0, 0, 2, if keyframe { 0x65 } else { 0x41 }, level]);
        objects.extend(p.push_video(VideoSample { time, keyframe, data: data(0) }).unwrap().objects);
        // Level 1: 0-3 s, paused, back at 7 s (mid-GOP: its next keyframe at 8 s).
        if !(90..210).contains(&v) {
            let out = p.push_video_level(1, VideoSample { time, keyframe, data: data(1) }).unwrap();
            requested |= out.keyframe_needed && v >= 210;
            objects.extend(out.objects);
        }
    }
    objects.extend(p.finish().objects);
    let fragment = |start: u64| {
        let key = layout::fragment_key(mediastreams_packager::TrackType::Video, 300_000, start);
        let body = objects.iter().find(|o| o.key == key).unwrap_or_else(|| panic!("{key} is not written")).body.clone();
        (parse_fragment(&body), body)
    };
    // [4, 6) s: paused; [6, 8) s: resumed at 7 s, no keyframe yet: the last one alone.
    for start in [40_000_000, 60_000_000] {
        let (f, body) = fragment(start);
        assert_eq!(f.sample_count, 1, "{start}: its last keyframe alone");
        assert!(body.ends_with(&[0, 0, 0, 2, 0x65, 1]), "{start}: the keyframe of 2 s");
    }
    assert!(requested, "the resumed level's keyframe is asked for");
    // [8, 10) s: its own pictures from its keyframe.
    let (f, body) = fragment(80_000_000);
    assert_eq!(f.sample_count, 60);
    let mdat = body.windows(4).position(|w| w == b"mdat").unwrap();
    assert_eq!(&body[mdat + 4..mdat + 10], &[0, 0, 0, 2, 0x65, 1], "it starts with its keyframe");
}

/// A keyframe whose in-band SPS gives a larger picture than the level's
/// first (a simulcast recording moving up to its full layer, a publisher
/// scaling up): the manifests give the largest picture; a smaller one does
/// not shrink them.
#[test]
fn manifests_give_the_largest_picture_a_level_has_sent() {
    use mediastreams_packager::VideoSample;
    fn sps_hex(s: &str) -> Vec<u8> {
        let s: String = s.lines().filter(|l| !l.starts_with('#')).collect();
        (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
    }
    let big = sps_hex(include_str!("../testdata/h264-1280x720-baseline.sps.hex"));
    let small = sps_hex(include_str!("../testdata/h264-320x240-baseline.sps.hex"));
    let keyframe_with = |sps: &[u8]| {
        let mut d = (sps.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(sps);
        d.extend_from_slice(&[0, 0, 0, 2, 0x65, 0]);
        Bytes::from(d)
    };
    let mut p = common::presentation(true, true);
    let mut objects = Vec::new();
    for v in 0..(9 * 30u64) {
        let time = (v * 10_000_000 / 30) as i64;
        let keyframe = v % 60 == 0;
        // 320x240 (the level's first), 1280x720 from 4 s, 320x240 again from 8 s.
        let data = match (keyframe, v) {
            (true, 120..240) => keyframe_with(&big),
            (true, _) => keyframe_with(&small),
            (false, _) => Bytes::from_static(&[0, 0, 0, 2, 0x41, 0]),
        };
        objects.extend(p.push_video(VideoSample { time, keyframe, data }).unwrap().objects);
    }
    objects.extend(p.finish().objects);
    let last = |key: &str| std::str::from_utf8(&objects.iter().rev().find(|o| o.key == key).unwrap().body).unwrap().to_owned();
    assert!(last(layout::SMOOTH_MANIFEST).contains("MaxWidth=\"1280\" MaxHeight=\"720\""));
    assert!(last(layout::DASH_MANIFEST).contains("width=\"1280\" height=\"720\""));
    assert!(last(layout::HLS_MULTIVARIANT).contains("RESOLUTION=1280x720"));
    // And the larger picture's profile and level (level 3.1, 0x1f).
    assert!(last(layout::DASH_MANIFEST).contains("codecs=\"avc1.42C01F\""), "{}", last(layout::DASH_MANIFEST));

    // A continued presentation keeps what its stored manifest said.
    let mut resumed = common::presentation(true, true);
    resumed.video_picture_at_least(1280, 720);
    resumed.video_picture_at_least(640, 360);
    let mut objects = Vec::new();
    for v in 0..(7 * 30u64) {
        let time = (v * 10_000_000 / 30) as i64;
        let keyframe = v % 60 == 0;
        let data = if keyframe { keyframe_with(&small) } else { Bytes::from_static(&[0, 0, 0, 2, 0x41, 0]) };
        objects.extend(resumed.push_video(VideoSample { time, keyframe, data }).unwrap().objects);
    }
    objects.extend(resumed.finish().objects);
    let smooth = objects.iter().rev().find(|o| o.key == layout::SMOOTH_MANIFEST).unwrap();
    assert!(std::str::from_utf8(&smooth.body).unwrap().contains("MaxWidth=\"1280\" MaxHeight=\"720\""));
}

/// Audio that starts shortly after video starts with it: preceded by
/// silence from the video's start when the caller gave a silent frame (in
/// sync within a frame), else moved back onto it, all of it. Either way
/// its frames stay contiguous (the second frame is not taken for a gap
/// after the first): no hole, no one-frame fragment.
#[test]
fn audio_starting_after_video_is_moved_back_whole() {
    use mediastreams_packager::{AudioFrame, VideoSample};
    for (silence, late_ms) in [(false, 100i64), (false, 190), (false, 30), (true, 100), (true, 190), (true, 30)] {
        let codec_frame = 1024u64;
        let mut p = common::presentation(false, false);
        if silence {
            p.set_audio_silence(Bytes::from_static(&[9, 9]));
        }
        let frames = 6 * 48_000 / codec_frame;
        let audio_at = |a: u64| late_ms * 10_000 + (a * codec_frame * 10_000_000 / 48_000) as i64;
        let (mut v, mut a) = (0u64, 0u64);
        while v < 6 * 30 || a < frames {
            let vt = (v * 10_000_000 / 30) as i64;
            if v < 6 * 30 && (a >= frames || vt <= audio_at(a)) {
                p.push_video(VideoSample { time: vt, keyframe: v % 60 == 0, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) }).unwrap();
                v += 1;
            } else {
                p.push_audio(AudioFrame { time: audio_at(a), data: Bytes::from_static(&[1, 2]) }).unwrap();
                a += 1;
            }
        }
        p.finish();
        let (_, audio) = p.published();
        assert_eq!(audio.first().map(|c| c.start), Some(0), "{late_ms} ms late: audio starts with the video");
        for w in audio.windows(2) {
            assert_eq!(w[0].start + w[0].duration, w[1].start, "{late_ms} ms late: contiguous audio: {audio:?}");
        }
        assert!(audio.iter().all(|c| c.duration > 1_000_000), "{late_ms} ms late: no one-frame fragment: {audio:?}");
        let total: u64 = audio.iter().map(|c| c.duration).sum();
        let frame = codec_frame * 10_000_000 / 48_000;
        if silence {
            // Silence from the video's start, whole frames: the audio ends
            // within a frame of where it really does (in sync).
            let end = (late_ms as u64 * 10_000) + frames * codec_frame * 10_000_000 / 48_000;
            assert!(total <= end && end - total < frame, "{late_ms} ms late, with silence: ends at {total}, really {end}");
        } else {
            // Without a silent frame, all audio is moved earlier.
            assert_eq!(total, frames * codec_frame * 10_000_000 / 48_000, "{late_ms} ms late: every frame, no hole");
        }
    }
}

/// Simulcast levels' bitrates are measured over their first fragment,
/// fixed from then on (the keys are named by them), unlike each other;
/// every listed fragment exists at the manifests' bitrate; a continued
/// presentation keeps every level and its keys.
#[test]
fn measured_levels_name_their_keys_by_their_first_fragment_and_resume() {
    use mediastreams_packager::recovery::{StoredTrack, parse_live_manifest, stored_chunks, video_configs};
    use mediastreams_packager::{AudioTrackConfig, MEASURED_BITRATE, Presentation, Stored, TrackType, VideoSample, VideoTrackConfig};
    let level = || VideoTrackConfig { bitrate: MEASURED_BITRATE, sps: common::sps(), pps: Bytes::from_static(common::PPS) };
    let audio = AudioTrackConfig { codec: mediastreams_packager::AudioCodec::Aac, bitrate: 128_000, sample_rate: 48_000, channels: 2 };
    let mut p = Presentation::with_video_levels(common::config(true, true), vec![level(), level(), level()], audio).unwrap();
    // Per frame: 1000, 4000 and 1000 bytes (the third level measures
    // as the first: it takes the next kb/s).
    let sizes = [1000usize, 4000, 1000];
    let frame = |n: usize| Bytes::from(vec![0u8; n]);
    let mut objects = Vec::new();
    let feed = |p: &mut Presentation, from: u64, to: u64, objects: &mut Vec<mediastreams_packager::PublishedObject>| {
        for v in from..to {
            let time = (v * 10_000_000 / 30) as i64;
            for (l, n) in sizes.iter().enumerate() {
                let s = VideoSample { time, keyframe: v % 60 == 0, data: frame(*n) };
                objects.extend(p.push_video_level(l, s).unwrap().objects);
            }
        }
    };
    feed(&mut p, 0, 8 * 30, &mut objects);
    let live = objects.iter().rev().find(|o| o.key == layout::SMOOTH_MANIFEST).expect("a live manifest");
    let manifest = parse_live_manifest(std::str::from_utf8(&live.body).unwrap()).unwrap();
    let bitrates: Vec<u32> = manifest.video.iter().map(|l| l.bitrate).collect();
    // 1000 bytes a frame at 30 fps: 240 kb/s.
    assert_eq!(bitrates, vec![240_000, 960_000, 241_000], "measured over the first fragment, unlike each other");
    for c in &manifest.video_chunks {
        for b in &bitrates {
            let key = layout::fragment_key(TrackType::Video, *b, c.start);
            assert!(objects.iter().any(|o| o.key == key), "{key} is listed but not written");
        }
    }
    // No object is named by an unmeasured bitrate.
    assert!(!objects.iter().any(|o| o.key.contains("QualityLevels(0)")), "a key named before its level was measured");

    // The node dies; a new packager continues every level at its keys.
    let configs = video_configs(&manifest).unwrap();
    assert_eq!(configs.iter().map(|c| c.bitrate).collect::<Vec<_>>(), bitrates);
    let starts: Vec<u64> = manifest.video_chunks.iter().map(|c| c.start).collect();
    let stored: Stored = stored_chunks(&manifest, &StoredTrack { starts, last_duration: None }, &StoredTrack::default(), 20_000_000);
    let listed = stored.video.len();
    let mut q = Presentation::resume_levels(common::config(true, true), configs, audio, Stored { audio: Vec::new(), ..stored }).unwrap();
    let end = q.end_time() / 333_333;
    let mut more = Vec::new();
    feed(&mut q, end + 1, end + 1 + 6 * 30, &mut more);
    more.extend(q.finish().objects);
    let last = more.iter().rev().find(|o| o.key == layout::SMOOTH_MANIFEST).unwrap();
    let after = parse_live_manifest(std::str::from_utf8(&last.body).unwrap()).unwrap();
    assert_eq!(after.video.iter().map(|l| l.bitrate).collect::<Vec<_>>(), bitrates, "the stored levels, in order");
    assert!(after.video_chunks.len() > listed);
    for c in &after.video_chunks[listed..] {
        for b in &bitrates {
            let key = layout::fragment_key(TrackType::Video, *b, c.start);
            assert!(more.iter().any(|o| o.key == key), "{key} is listed but not written after the resume");
        }
    }
    // Nothing stored is written again.
    for c in &manifest.video_chunks {
        let key = layout::fragment_key(TrackType::Video, bitrates[0], c.start);
        assert!(!more.iter().any(|o| o.key == key), "{key} written again");
    }
}
