#!/usr/bin/python3
"""Plays a stream URL with GStreamer's playbin3 (hlsdemux2 / dashdemux2,
Debian's GStreamer 1.22) as fast as it can decode, and reports as one JSON
line what it did: whether it reached end-of-stream, any error, and how many
video frames and audio buffers reached the sinks.

    gst_play.py URL [--timeout SECONDS] [--for SECONDS]

--for stops the player after that long without calling it an error
("stopped": true): a live stream followed for a while.

Exit status 0 when the pipeline ran; the caller judges the report.
"""
import argparse
import json
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--for", dest="play_for", type=float, default=None)
    args = parser.parse_args()
    Gst.init(None)
    report = {"eos": False, "stopped": False, "errors": [], "videoFrames": 0, "audioBuffers": 0, "videoCaps": None, "lastVideoPts": None}

    playbin = Gst.ElementFactory.make("playbin3", None)
    if playbin is None:
        report["errors"].append("no playbin3")
        print(json.dumps(report))
        return 0
    video_sink = Gst.ElementFactory.make("fakesink", "video")
    audio_sink = Gst.ElementFactory.make("fakesink", "audio")
    for sink in (video_sink, audio_sink):
        sink.set_property("sync", False)
        sink.set_property("signal-handoffs", True)

    def on_video(_sink, buffer, pad):
        report["videoFrames"] += 1
        if buffer.pts != Gst.CLOCK_TIME_NONE:
            report["lastVideoPts"] = buffer.pts / Gst.SECOND
        if report["videoCaps"] is None:
            caps = pad.get_current_caps()
            if caps is not None:
                s = caps.get_structure(0)
                report["videoCaps"] = {"width": s.get_value("width"), "height": s.get_value("height")}

    def on_audio(_sink, _buffer, _pad):
        report["audioBuffers"] += 1

    video_sink.connect("handoff", on_video)
    audio_sink.connect("handoff", on_audio)
    playbin.set_property("video-sink", video_sink)
    playbin.set_property("audio-sink", audio_sink)
    playbin.set_property("uri", args.url)

    loop = GLib.MainLoop()

    def on_message(_bus, message):
        if message.type == Gst.MessageType.EOS:
            report["eos"] = True
            loop.quit()
        elif message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            report["errors"].append(f"{err.message} ({debug})")
            loop.quit()

    bus = playbin.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)

    def on_timeout():
        report["errors"].append(f"no end-of-stream within {args.timeout} s")
        loop.quit()
        return False

    def on_stop():
        report["stopped"] = True
        loop.quit()
        return False

    if args.play_for is not None and args.play_for < args.timeout:
        GLib.timeout_add(int(args.play_for * 1000), on_stop)
    else:
        GLib.timeout_add(int(args.timeout * 1000), on_timeout)
    playbin.set_state(Gst.State.PLAYING)
    loop.run()
    ok, duration = playbin.query_duration(Gst.Format.TIME)
    report["duration"] = duration / Gst.SECOND if ok else None
    playbin.set_state(Gst.State.NULL)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
