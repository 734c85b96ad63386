//! The ingest node's recorder on real media, on both storage backends:
//! first media makes the stream Live, fragments and live manifests appear
//! while it is live, and after stop-ingest the same URLs hold a complete
//! on-demand presentation and the stream is OnDemand.

use mediastreams_ingest_node::recorder::Recorder;
use mediastreams_storage::ObjectKey;
use mediastreams_tests::media::{ClipSample, encode_test_clip};
use serde_json::{Value, json};

use crate::api::harness::Env;

async fn manifest(env: &Env, pid: &str) -> Option<String> {
    let key = ObjectKey::parse(&format!("{pid}/smooth.ism/Manifest")).unwrap();
    env.media.get(&key).await.unwrap().map(|o| String::from_utf8(o.body.to_vec()).unwrap())
}

/// A track's fragments in a Smooth manifest: (start, duration).
pub(crate) fn chunks(xml: &str, kind: &str) -> Vec<(u64, u64)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("StreamIndex") && n.attribute("Type") == Some(kind))
        .flat_map(|si| si.children().filter(|c| c.has_tag_name("c")).collect::<Vec<_>>())
        .map(|c| (c.attribute("t").unwrap().parse().unwrap(), c.attribute("d").unwrap().parse().unwrap()))
        .collect()
}

async fn record_live_then_on_demand(env: Env) {
    let created =
        env.call("PUT", "/streams/rec", Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"d","format":"dash"}]}))).await;
    let pid = created.json()["playbackId"].as_str().unwrap().to_owned();
    let stale = mediastreams_ingest_node::Generation { playback_id: pid.clone(), token_hash: mediastreams_model::TokenHash::of("stale") };
    assert!(
        Recorder::open(env.repo.clone(), env.media.clone(), "rec", &stale, 500_000, Default::default(), true).await.is_err(),
        "a Created stream takes no media"
    );
    assert_eq!(env.call("POST", "/streams/rec/start-ingest", None).await.status, 200);
    let generation = mediastreams_ingest_node::Generation::of(&env.repo.get("rec").await.unwrap().unwrap().stream).unwrap();
    assert!(
        Recorder::open(env.repo.clone(), env.media.clone(), "rec", &stale, 500_000, Default::default(), true).await.is_err(),
        "another generation's recorder is refused"
    );

    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 6, 60);
    let mut rec = Recorder::open(env.repo.clone(), env.media.clone(), "rec", &generation, 500_000, Default::default(), true).await.unwrap();
    let mut live_seen = false;
    for (i, s) in clip.samples(2, 0).into_iter().enumerate() {
        match s {
            ClipSample::Video(v) => {
                let first = i == 0 || !live_seen;
                let (sps, pps) = (Some(&clip.sps), Some(&clip.pps));
                rec.push_video(0, v, sps, pps, std::time::Instant::now()).await.unwrap();
                if first {
                    // The transition runs beside media: it lands soon after.
                    let mut state = Value::Null;
                    for _ in 0..50 {
                        state = env.call("GET", "/streams/rec", None).await.json()["state"].clone();
                        if state == "Live" {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    assert_eq!(state, "Live", "first media makes the stream Live");
                    live_seen = true;
                }
            }
            ClipSample::Audio(a) => rec.push_audio(a).await.unwrap(),
        }
    }
    // While live the manifest is live. (The uploader runs concurrently; wait
    // for it to catch up by polling briefly.)
    let mut live_manifest = None;
    for _ in 0..50 {
        if let Some(m) = manifest(&env, &pid).await
            && chunks(&m, "video").len() >= 3
        {
            live_manifest = Some(m);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let live_manifest = live_manifest.expect("a live manifest with fragments");
    assert!(live_manifest.contains("IsLive=\"TRUE\""));

    let stop = env.call("POST", "/streams/rec/stop-ingest", None).await;
    assert_eq!((stop.status, stop.json()["state"].as_str()), (202, Some("Stopping")));
    // The stream task hands over the statistics of its last window.
    let last_window = mediastreams_model::IngestStats { last_media_at: Some(time::OffsetDateTime::now_utc()), ..Default::default() };
    let stats = rec.finish(Some(last_window)).await.unwrap();
    assert_eq!(stats.retries, 0);
    let done = env.call("GET", "/streams/rec", None).await.json();
    assert_eq!(done["state"], "OnDemand");

    let vod = manifest(&env, &pid).await.unwrap();
    assert!(!vod.contains("IsLive"), "the same URL now serves the on-demand manifest");
    let video = chunks(&vod, "video");
    let audio = chunks(&vod, "audio");
    // The finished recording's statistics count what it stored.
    assert_eq!(done["stats"]["fragmentsStored"].as_u64(), Some((video.len() + audio.len()) as u64), "{}", done["stats"]);
    assert_eq!(stats.store.fragments, (video.len() + audio.len()) as u64);
    assert!(done["stats"]["fragmentsLate"].is_u64() && done["stats"]["fragmentStoreMsP99"].is_u64(), "{}", done["stats"]);
    for list in [&video, &audio] {
        for w in list.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "contiguous");
        }
    }
    let end = video.last().map(|(t, d)| t + d).unwrap();
    assert!((119_000_000..=121_000_000).contains(&end), "12 s recorded: {end}");
    for (t, _) in &video {
        let key = ObjectKey::parse(&format!("{pid}/smooth.ism/QualityLevels(500000)/Fragments(video={t})")).unwrap();
        assert!(env.media.get(&key).await.unwrap().is_some(), "fragment {t} is stored");
    }
    let mpd = ObjectKey::parse(&format!("{pid}/dash/manifest.mpd")).unwrap();
    let mpd = String::from_utf8(env.media.get(&mpd).await.unwrap().unwrap().body.to_vec()).unwrap();
    assert!(mpd.contains("type=\"static\""));
    let hls = ObjectKey::parse(&format!("{pid}/hls/main.m3u8")).unwrap();
    assert!(env.media.get(&hls).await.unwrap().is_none(), "only the outputs the stream asked for");
}

#[tokio::test]
async fn records_on_local_storage() {
    record_live_then_on_demand(Env::local_embedded(None).await).await;
}

#[tokio::test]
async fn records_on_dynamodb_and_s3() {
    record_live_then_on_demand(Env::local_aws().await).await;
}

/// A node went live and died before its first manifest was stored: the
/// fragments it stored are listed by no manifest. A recorder opened then
/// starts its presentation after them, so none is written again.
#[tokio::test]
async fn unlisted_stored_fragments_are_never_written_again() {
    use mediastreams_packager::{Presentation, VideoTrackConfig};
    use mediastreams_storage::ObjectMeta;
    let env = Env::local_embedded(None).await;
    let created = env.call("PUT", "/streams/early", Some(json!({"outputs":[{"name":"s","format":"smooth"}]}))).await;
    let pid = created.json()["playbackId"].as_str().unwrap().to_owned();
    assert_eq!(env.call("POST", "/streams/early/start-ingest", None).await.status, 200);
    env.repo.transition("early", mediastreams_model::Transition::MediaArrived, time::OffsetDateTime::now_utc(), None).await.unwrap();
    let generation = mediastreams_ingest_node::Generation::of(&env.repo.get("early").await.unwrap().unwrap().stream).unwrap();
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 6, 60);
    // What the dead node stored: its fragments, no manifest.
    let mut dead = Presentation::new(
        mediastreams_tests::media::all_outputs_config(0),
        VideoTrackConfig { bitrate: 500_000, sps: clip.sps.clone(), pps: clip.pps.clone() },
        mediastreams_ingest_node::recorder::audio_track(
            mediastreams_packager::AudioCodec::Aac,
            mediastreams_ingest_node::media::audio::Channels::Stereo,
        ),
    )
    .unwrap();
    let mut stored = Vec::new();
    for s in clip.samples(1, 0) {
        let out = match s {
            ClipSample::Video(v) => dead.push_video(v).unwrap(),
            ClipSample::Audio(a) => dead.push_audio(a).unwrap(),
        };
        for o in out.objects.into_iter().filter(|o| o.key.contains("Fragments(")) {
            let key = ObjectKey::parse(&format!("{pid}/{}", o.key)).unwrap();
            env.media.put(&key, o.body.clone(), &ObjectMeta::new(o.content_type, Some(o.cache_control))).await.unwrap();
            stored.push((o.key, o.body));
        }
    }
    assert!(stored.len() >= 2, "the dead node stored fragments: {}", stored.len());
    let mut rec =
        Recorder::open(env.repo.clone(), env.media.clone(), "early", &generation, 500_000, Default::default(), true).await.unwrap();
    let start = rec.continues_at();
    assert!(start > 0, "the new presentation starts after the stored fragments");
    for s in clip.samples(1, start) {
        match s {
            ClipSample::Video(v) => {
                rec.push_video(0, v, Some(&clip.sps), Some(&clip.pps), std::time::Instant::now()).await.unwrap();
            }
            ClipSample::Audio(a) => rec.push_audio(a).await.unwrap(),
        }
    }
    assert_eq!(env.call("POST", "/streams/early/stop-ingest", None).await.status, 202);
    rec.finish(None).await.unwrap();
    for (key, body) in &stored {
        let o = env.media.get(&ObjectKey::parse(&format!("{pid}/{key}")).unwrap()).await.unwrap().unwrap();
        assert_eq!(&o.body, body, "{key} was written again");
    }
    let video = chunks(&manifest(&env, &pid).await.unwrap(), "video");
    assert!(video.first().is_some_and(|c| c.0 >= start as u64), "the recording starts after the stored fragments: {video:?} from {start}");
}

/// A node that recorded a simulcast publisher as two video levels (their
/// bitrates measured) died, having stored its first level's latest
/// fragment but not yet the second level's; a recorder opened on the
/// `Live` stream continues every level at its own keys, after every
/// stored fragment: the final manifests list both levels at their stored
/// bitrates, every listed fragment exists for each (the first level's
/// lone fragment stays stored, unlisted), and nothing stored is written
/// again.
#[tokio::test]
async fn a_recording_of_several_levels_continues_every_level_after_a_restart() {
    use mediastreams_packager::{MEASURED_BITRATE, Presentation, VideoTrackConfig};
    use mediastreams_storage::ObjectMeta;
    let env = Env::local_embedded(None).await;
    let created =
        env.call("PUT", "/streams/ladder", Some(json!({"outputs":[{"name":"s","format":"smooth"},{"name":"h","format":"hls"}]}))).await;
    let pid = created.json()["playbackId"].as_str().unwrap().to_owned();
    assert_eq!(env.call("POST", "/streams/ladder/start-ingest", None).await.status, 200);
    env.repo.transition("ladder", mediastreams_model::Transition::MediaArrived, time::OffsetDateTime::now_utc(), None).await.unwrap();
    let generation = mediastreams_ingest_node::Generation::of(&env.repo.get("ladder").await.unwrap().unwrap().stream).unwrap();
    let dir = mediastreams_tests::scratch();
    let small = mediastreams_tests::media::encode_sized_test_clip(dir.path(), 6, 60, (320, 180));
    let large = mediastreams_tests::media::encode_sized_test_clip(dir.path(), 6, 60, (640, 360));
    let clips = [&small, &large];
    let audio = mediastreams_ingest_node::recorder::audio_track(
        mediastreams_packager::AudioCodec::Aac,
        mediastreams_ingest_node::media::audio::Channels::Stereo,
    );
    // What the dead node stored: fragments and live manifests.
    let mut config = mediastreams_tests::media::all_outputs_config(0);
    config.dash = false;
    let videos = clips.iter().map(|c| VideoTrackConfig { bitrate: MEASURED_BITRATE, sps: c.sps.clone(), pps: c.pps.clone() }).collect();
    let mut dead = Presentation::with_video_levels(config, videos, audio).unwrap();
    let samples = mediastreams_tests::media::level_samples(&clips, 1, 0);
    let mut objects = Vec::new();
    for (level, s) in samples {
        let out = match s {
            ClipSample::Video(v) => dead.push_video_level(level, v).unwrap(),
            ClipSample::Audio(a) => dead.push_audio(a).unwrap(),
        };
        objects.extend(out.objects);
    }
    // The node died right after storing the first level's latest video
    // fragment: the second level's, and the manifest listing it, were
    // still queued (levels are written one after another).
    let last_start = objects
        .iter()
        .filter_map(|o| o.key.split("Fragments(video=").nth(1).and_then(|t| t.trim_end_matches(')').parse::<u64>().ok()))
        .max()
        .unwrap();
    let cut = objects.iter().position(|o| o.key.ends_with(&format!("Fragments(video={last_start})"))).unwrap();
    objects.truncate(cut + 1);
    let mut stored = Vec::new();
    for o in objects {
        let key = ObjectKey::parse(&format!("{pid}/{}", o.key)).unwrap();
        env.media.put(&key, o.body.clone(), &ObjectMeta::new(o.content_type, Some(o.cache_control))).await.unwrap();
        if o.key.contains("Fragments(") {
            stored.push((o.key, o.body));
        }
    }
    let live = manifest(&env, &pid).await.expect("a live manifest");
    let bitrates: Vec<u64> = roxmltree::Document::parse(&live)
        .unwrap()
        .descendants()
        .filter(|n| n.has_tag_name("QualityLevel") && n.attribute("MaxWidth").is_some())
        .map(|q| q.attribute("Bitrate").unwrap().parse().unwrap())
        .collect();
    assert_eq!(bitrates.len(), 2, "two measured levels: {live}");
    assert!(bitrates[0] < bitrates[1], "{bitrates:?}");

    let mut rec =
        Recorder::open(env.repo.clone(), env.media.clone(), "ladder", &generation, 500_000, Default::default(), true).await.unwrap();
    assert_eq!(rec.video_level_pictures(), Some(vec![(320, 180), (640, 360)]), "the stored levels");
    let start = rec.continues_at();
    let more = mediastreams_tests::media::level_samples(&clips, 1, start);
    for (level, s) in more {
        match s {
            ClipSample::Video(v) => {
                let clip = clips[level];
                rec.push_video(level, v, Some(&clip.sps), Some(&clip.pps), std::time::Instant::now()).await.unwrap();
            }
            ClipSample::Audio(a) => rec.push_audio(a).await.unwrap(),
        }
    }
    assert_eq!(env.call("POST", "/streams/ladder/stop-ingest", None).await.status, 202);
    rec.finish(None).await.unwrap();
    for (key, body) in &stored {
        let o = env.media.get(&ObjectKey::parse(&format!("{pid}/{key}")).unwrap()).await.unwrap().unwrap();
        assert_eq!(&o.body, body, "{key} was written again");
    }
    let last = manifest(&env, &pid).await.unwrap();
    let after: Vec<u64> = roxmltree::Document::parse(&last)
        .unwrap()
        .descendants()
        .filter(|n| n.has_tag_name("QualityLevel") && n.attribute("MaxWidth").is_some())
        .map(|q| q.attribute("Bitrate").unwrap().parse().unwrap())
        .collect();
    assert_eq!(after, bitrates, "both levels, at their stored bitrates");
    let video = chunks(&last, "video");
    assert!(video.last().is_some_and(|c| c.0 > start as u64), "continued after {start}: {video:?}");
    assert!(!video.iter().any(|c| c.0 == last_start), "the lone fragment is not listed: {video:?}");
    assert!(start as u64 > last_start, "the recording continues after every stored fragment");
    for (t, _) in &video {
        for b in &bitrates {
            let key = ObjectKey::parse(&format!("{pid}/smooth.ism/QualityLevels({b})/Fragments(video={t})")).unwrap();
            assert!(env.media.get(&key).await.unwrap().is_some(), "{key:?} is listed but not stored");
        }
    }
    let hls = env.media.get(&ObjectKey::parse(&format!("{pid}/hls/main.m3u8")).unwrap()).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&hls.body).matches("#EXT-X-STREAM-INF").count(), 2, "an HLS variant per level");
}

/// A node stored its first video level's fragment at T alone and died (no
/// manifest listed T); the next node recorded on and listed later
/// fragments, then died too. Reading the recording back (the reaper, or a
/// third node) keeps T unlisted: every fragment it lists exists for every
/// level, and the listed ones around T stay listed.
#[tokio::test]
async fn a_fragment_of_one_level_alone_stays_unlisted_after_a_second_restart() {
    use mediastreams_packager::{MEASURED_BITRATE, Presentation, VideoTrackConfig};
    use mediastreams_storage::{ObjectMeta, recording};
    let env = Env::local_embedded(None).await;
    let pid = "lone";
    let dir = mediastreams_tests::scratch();
    let small = mediastreams_tests::media::encode_sized_test_clip(dir.path(), 6, 60, (320, 180));
    let large = mediastreams_tests::media::encode_sized_test_clip(dir.path(), 6, 60, (640, 360));
    let clips = [&small, &large];
    let audio = mediastreams_ingest_node::recorder::audio_track(
        mediastreams_packager::AudioCodec::Aac,
        mediastreams_ingest_node::media::audio::Channels::Stereo,
    );
    let videos = clips.iter().map(|c| VideoTrackConfig { bitrate: MEASURED_BITRATE, sps: c.sps.clone(), pps: c.pps.clone() }).collect();
    let mut p = Presentation::with_video_levels(mediastreams_tests::media::all_outputs_config(0), videos, audio).unwrap();
    let samples = mediastreams_tests::media::level_samples(&clips, 2, 0);
    let mut objects = Vec::new();
    for (level, s) in samples {
        let out = match s {
            ClipSample::Video(v) => p.push_video_level(level, v).unwrap(),
            ClipSample::Audio(a) => p.push_audio(a).unwrap(),
        };
        objects.extend(out.objects);
    }
    let manifest = objects.iter().rev().find(|o| o.key == "smooth.ism/Manifest").unwrap().clone();
    let xml = String::from_utf8(manifest.body.to_vec()).unwrap();
    let listed = chunks(&xml, "video");
    assert!(listed.len() >= 4, "{listed:?}");
    let (lone, lone_d) = listed[2];
    let levels: Vec<u32> = mediastreams_packager::recovery::parse_live_manifest(&xml).unwrap().video.iter().map(|l| l.bitrate).collect();
    // What storage holds: every object but the second level's fragment at
    // T, and the last manifest without T (no node ever listed it).
    let missing = format!("smooth.ism/QualityLevels({})/Fragments(video={lone})", levels[1]);
    for o in objects.iter().filter(|o| o.key.contains("Fragments(") && o.key != missing) {
        let key = ObjectKey::parse(&format!("{pid}/{}", o.key)).unwrap();
        env.media.put(&key, o.body.clone(), &ObjectMeta::new(o.content_type, Some(o.cache_control))).await.unwrap();
    }
    let edited = xml.replacen(&format!("    <c t=\"{lone}\" d=\"{lone_d}\"/>\n"), "", 1);
    assert_ne!(edited, xml, "T's entry is taken out");
    let key = ObjectKey::parse(&format!("{pid}/smooth.ism/Manifest")).unwrap();
    env.media.put(&key, bytes::Bytes::from(edited), &ObjectMeta::new(manifest.content_type, Some(manifest.cache_control))).await.unwrap();

    let stored = recording::read(env.media.as_ref(), pid).await.unwrap().expect("a recording");
    assert!(!stored.video.starts.contains(&lone), "T stays unlisted: {:?}", stored.video.starts);
    for (t, _) in listed.iter().filter(|(t, _)| *t != lone) {
        assert!(stored.video.starts.contains(t), "{t} was listed and stays listed: {:?}", stored.video.starts);
    }
    // And the final manifests from it list only what every level holds.
    let finals = mediastreams_packager::recovery::final_manifests(
        &stored.live,
        &stored.video,
        &stored.audio,
        mediastreams_packager::recovery::Formats { dash: true, hls: true },
        20_000_000,
    );
    let smooth = finals.iter().find(|o| o.key == "smooth.ism/Manifest").unwrap();
    for (t, _) in chunks(std::str::from_utf8(&smooth.body).unwrap(), "video") {
        for b in &levels {
            let key = ObjectKey::parse(&format!("{pid}/smooth.ism/QualityLevels({b})/Fragments(video={t})")).unwrap();
            assert!(env.media.get(&key).await.unwrap().is_some(), "{key:?} is listed but not stored");
        }
    }
}

/// DASH players place the live edge by the MPD's `availabilityStartTime`:
/// the wall-clock time of position 0. A first picture that waited before
/// it was packaged (a simulcast publisher's layers being settled) gives
/// the time it arrived, not the time it was packaged: otherwise players
/// would sit that much further behind the live edge.
#[tokio::test]
async fn dash_availability_starts_when_the_first_picture_arrived() {
    let env = Env::local_embedded(None).await;
    let created = env.call("PUT", "/streams/ast", Some(json!({"outputs":[{"name":"d","format":"dash"}]}))).await;
    let pid = created.json()["playbackId"].as_str().unwrap().to_owned();
    assert_eq!(env.call("POST", "/streams/ast/start-ingest", None).await.status, 200);
    let generation = mediastreams_ingest_node::Generation::of(&env.repo.get("ast").await.unwrap().unwrap().stream).unwrap();
    let dir = mediastreams_tests::scratch();
    let clip = encode_test_clip(dir.path(), 6, 60);
    // (AAC, as the clip's audio: Opus passthrough off.)
    let mut rec =
        Recorder::open(env.repo.clone(), env.media.clone(), "ast", &generation, 500_000, Default::default(), false).await.unwrap();
    let held = std::time::Duration::from_secs(2);
    let packaged_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut first = true;
    for s in clip.samples(1, 0) {
        match s {
            ClipSample::Video(v) => {
                // The first picture arrived 2 s before it is packaged.
                let arrival = if first { std::time::Instant::now() - held } else { std::time::Instant::now() };
                first = false;
                rec.push_video(0, v, Some(&clip.sps), Some(&clip.pps), arrival).await.unwrap();
            }
            ClipSample::Audio(a) => rec.push_audio(a).await.unwrap(),
        }
    }
    let key = ObjectKey::parse(&format!("{pid}/dash/manifest.mpd")).unwrap();
    let mut mpd = None;
    for _ in 0..100 {
        if let Some(o) = env.media.get(&key).await.unwrap() {
            mpd = Some(String::from_utf8(o.body.to_vec()).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mpd = mpd.expect("a live MPD");
    let ast = mpd.split("availabilityStartTime=\"").nth(1).and_then(|r| r.split('"').next()).expect("availabilityStartTime");
    let ast_ms =
        time::OffsetDateTime::parse(ast, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp_nanos() / 1_000_000;
    let expected = packaged_ms - held.as_millis() as i128;
    assert!((ast_ms - expected).abs() < 500, "availabilityStartTime {ast} is {} ms from when the first picture arrived", ast_ms - expected);
    rec.abandon();
}
