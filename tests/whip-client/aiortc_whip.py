"""A third-party WHIP publisher for the tests: aiortc (a Python WebRTC
stack, from PyPI) publishes a media file's video as H.264 and its audio as
Opus to a WHIP endpoint (RFC 9725), for a number of seconds, then ends its
session with DELETE.

    python aiortc_whip.py --url WHIP_URL --token TOKEN --media FILE --seconds N [--offer-out FILE]

Prints one JSON line: the HTTP statuses, the session URL, and how far the
connection got.
"""

import argparse
import asyncio
import json
import urllib.parse

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from whip_http import http


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--media", required=True)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--offer-out")
    a = p.parse_args()
    report = {}
    player = MediaPlayer(a.media, loop=True)
    pc = RTCPeerConnection()
    states = []
    pc.on("connectionstatechange", lambda: states.append(pc.connectionState))
    video = pc.addTransceiver(player.video, direction="sendonly")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
    pc.addTransceiver(player.audio, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    if a.offer_out:
        with open(a.offer_out, "w", newline="") as f:
            f.write(offer)
    loop = asyncio.get_running_loop()
    status, headers, answer = await loop.run_in_executor(None, http, "POST", a.url, a.token, offer.encode(), "application/sdp")
    report["post"] = status
    if status != 201:
        report["error"] = answer
        print(json.dumps(report))
        return
    location = urllib.parse.urljoin(a.url, headers.get("Location") or headers.get("location"))
    report["session"] = location
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.sleep(a.seconds)
    report["states"] = states
    status, _, _ = await loop.run_in_executor(None, http, "DELETE", location, a.token)
    report["delete"] = status
    await pc.close()
    player.video.stop()
    player.audio.stop()
    print(json.dumps(report))


asyncio.run(main())
