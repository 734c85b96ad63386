"""A GStreamer WHIP publisher for the tests: webrtcbin (Debian's GStreamer
1.22) sends a live test pattern as H.264 (x264enc, constrained baseline)
and a tone as Opus to a WHIP endpoint (RFC 9725) for a number of seconds,
then ends its session with DELETE. Debian's own `simple-whip-client` cannot
run on Debian 12 (it links libsoup 2 while GStreamer's webrtc plugins link
libsoup 3); this is the same pipeline, driven from Python.

    /usr/bin/python3 gst_whip.py --url WHIP_URL --token TOKEN --seconds N [--offer-out FILE]

Prints one JSON line: the HTTP statuses, the session URL, the connection
states seen.
"""

import argparse
import json
import threading
import urllib.parse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402
from whip_http import http  # noqa: E402

PIPELINE = """
webrtcbin name=whip bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert
  ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=600
  ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency
  ! application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000 ! whip.
audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! opusenc
  ! rtpopuspay ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! whip.
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--offer-out")
    a = p.parse_args()
    Gst.init(None)
    loop = GLib.MainLoop()
    pipe = Gst.parse_launch(PIPELINE)
    webrtc = pipe.get_by_name("whip")
    report = {"states": []}

    def finish(error=None):
        if error:
            report["error"] = error
        GLib.idle_add(loop.quit)

    def on_state(element, _pspec):
        report["states"].append(element.get_property("connection-state").value_nick)

    webrtc.connect("notify::connection-state", on_state)

    def post_offer():
        offer = webrtc.get_property("local-description").sdp.as_text()
        if a.offer_out:
            with open(a.offer_out, "w", newline="") as f:
                f.write(offer)
        status, headers, answer = http("POST", a.url, a.token, offer.encode(), "application/sdp")
        report["post"] = status
        if status != 201:
            finish(answer)
            return
        report["session"] = urllib.parse.urljoin(a.url, headers.get("Location") or headers.get("location"))
        ok, sdp = GstSdp.SDPMessage.new_from_text(answer)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        GLib.timeout_add(int(a.seconds * 1000), stop)

    def stop():
        status, _, _ = http("DELETE", report["session"], a.token)
        report["delete"] = status
        finish()
        return False

    def on_gathering(element, _pspec):
        if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE and "post" not in report:
            report["post"] = None
            # HTTP off the main loop thread.
            threading.Thread(target=post_offer, daemon=True).start()

    webrtc.connect("notify::ice-gathering-state", on_gathering)

    def on_offer(promise, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            finish(f"create-offer failed: {reply.to_string() if reply is not None else 'no reply'}")
            return
        webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_negotiation_needed(element):
        i = 0
        while (t := element.emit("get-transceiver", i)) is not None:
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
            i += 1
        element.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))

    webrtc.connect("on-negotiation-needed", on_negotiation_needed)
    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message::error", lambda _b, m: finish(str(m.parse_error()[0])))
    pipe.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int((a.seconds + 20) * 1000), lambda: finish("timed out") or False)
    loop.run()
    pipe.set_state(Gst.State.NULL)
    print(json.dumps(report))


main()
