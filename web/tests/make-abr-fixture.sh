#!/usr/bin/env bash
# Makes a small three-level fixture for checking play.mjs --switch-levels by
# hand (no Rust): a 20 s testsrc2 + sine clip in H.264 at 1280x720, 640x360
# and 320x180 (a keyframe every 2 s) with AAC, packaged by ffmpeg as
#   DIR/dash/manifest.mpd   DASH, one video AdaptationSet of three Representations
#   DIR/hls/master.m3u8     HLS, three fMP4 variants sharing an audio rendition
#   DIR/ss/Manifest         Smooth Streaming
# (ffmpeg's Smooth manifest lists chunks without start times, as if each
# stream started at 0; its video starts after the AAC priming, so the first
# chunk of each stream gets its real start, t, from the fragments' names.
# No B-frames, which would delay the video further.)
# And, with --live, the same DASH and HLS written live (ffmpeg -re, the clip
# played LOOPS+1 times, 60 s by default) into DIR/live-dash and DIR/live-hls;
# STREAMING=1 has ffmpeg's DASH muxer write fragments as they come (its MPD
# then says availabilityTimeComplete="false" and dash.js plays it at low
# latency, at the edge).
#
#   web/tests/make-abr-fixture.sh DIR [--live]
#
# Serve DIR over HTTP (with /healthz and /time, see play.mjs) and run e.g.
#   node web/tests/play.mjs --origin http://127.0.0.1:PORT \
#     --url http://127.0.0.1:PORT/dash/manifest.mpd --mode vod --seconds 20 --switch-levels
set -euo pipefail
dir=${1:?usage: make-abr-fixture.sh DIR [--live]}
live=${2:-}
mkdir -p "$dir"
clip="$dir/clip.mp4"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }

if [ ! -s "$clip" ]; then
  ff -f lavfi -i testsrc2=size=1280x720:rate=30:duration=20 -f lavfi -i sine=frequency=440:sample_rate=48000:duration=20 \
    -filter_complex '[0:v]split=3[a][b][c];[a]null[v0];[b]scale=640:360[v1];[c]scale=320:180[v2]' \
    -map '[v0]' -map '[v1]' -map '[v2]' -map 1:a \
    -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -bf 0 \
    -b:v:0 2000k -maxrate:v:0 2200k -bufsize:v:0 4000k \
    -b:v:1 800k -maxrate:v:1 900k -bufsize:v:1 1600k \
    -b:v:2 300k -maxrate:v:2 350k -bufsize:v:2 600k \
    -g 60 -keyint_min 60 -sc_threshold 0 -force_key_frames 'expr:gte(t,n_forced*2)' \
    -c:a aac -b:a 96k -ac 2 -movflags +faststart "$clip"
fi

maps=(-map 0:v:0 -map 0:v:1 -map 0:v:2 -map 0:a:0 -c copy)
dash_opts=(-f dash -seg_duration 2 -use_template 1 -use_timeline 1 -adaptation_sets 'id=0,streams=v id=1,streams=a')
hls_opts=(-f hls -hls_time 2 -hls_segment_type fmp4 -master_pl_name master.m3u8
  -var_stream_map 'v:0,agroup:aud v:1,agroup:aud v:2,agroup:aud a:0,agroup:aud,default:yes')

rm -rf "$dir/dash" "$dir/hls" "$dir/ss"
mkdir -p "$dir/dash" "$dir/hls" "$dir/ss"
ff -i "$clip" "${maps[@]}" "${dash_opts[@]}" "$dir/dash/manifest.mpd"
ff -i "$clip" "${maps[@]}" "${hls_opts[@]}" -hls_playlist_type vod \
  -hls_segment_filename "$dir/hls/%v/seg%d.m4s" -hls_fmp4_init_filename init.mp4 "$dir/hls/%v/index.m3u8"
ff -i "$clip" "${maps[@]}" -f smoothstreaming -min_frag_duration 2000000 -window_size 0 "$dir/ss"
for kind in video audio; do
  first=$(cd "$dir/ss" && ls -d QualityLevels*/"Fragments($kind="* | sed 's/.*=\([0-9]*\))$/\1/' | sort -n | head -1)
  sed -i "/<StreamIndex Type=\"$kind\"/,/<\/StreamIndex>/ s/<c n=\"0\" /<c n=\"0\" t=\"$first\" /" "$dir/ss/Manifest"
done

if [ "$live" = --live ]; then
  rm -rf "$dir/live-dash" "$dir/live-hls"
  mkdir -p "$dir/live-dash" "$dir/live-hls"
  ff -re -stream_loop "${LOOPS:-2}" -i "$clip" "${maps[@]}" "${dash_opts[@]}" -streaming "${STREAMING:-0}" -window_size 0 \
    -utc_timing_url "http://127.0.0.1:${PORT:-8099}/time" "$dir/live-dash/manifest.mpd" &
  ff -re -stream_loop "${LOOPS:-2}" -i "$clip" "${maps[@]}" "${hls_opts[@]}" -hls_list_size 0 -hls_playlist_type event \
    -hls_segment_filename "$dir/live-hls/%v/seg%d.m4s" -hls_fmp4_init_filename init.mp4 "$dir/live-hls/%v/index.m3u8" &
  wait
fi
echo "fixture in $dir" >&2
