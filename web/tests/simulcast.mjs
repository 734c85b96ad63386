// A simulcast publisher in headless Chromium: the fake camera at 1280x720
// sent as three H.264 encodings (rids q, h, f: a quarter, half and full
// resolution) over WHIP, for N seconds; then stop-ingest and WHIP DELETE.
//
//   node simulcast.mjs --origin http://127.0.0.1:PORT --name STREAM --seconds 10
//        [--pause-at 4 --resume-at 8]   # the full layer inactive in between
//
// Prints one JSON report line (each layer's sent size and frames, from
// getStats); the Rust test judges the recording.
import { chromium } from 'playwright-core';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const origin = arg('origin');
const name = arg('name', 'simulcast');
const seconds = Number(arg('seconds', '10'));
const pauseAt = Number(arg('pause-at', '-1'));
const resumeAt = Number(arg('resume-at', '-1'));

const ARGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--no-sandbox', '--disable-gpu',
  '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const report = { errors: [] };
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
try {
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const page = await context.newPage();
  page.on('pageerror', (e) => report.errors.push(`page: ${e.message}`));
  // Any page of the origin: the publisher is written here, not the studio's.
  await page.goto(`${origin}/studio.html`);
  const started = await (await fetch(`${origin}/streams/${name}/start-ingest`, { method: 'POST' })).json();
  Object.assign(report, await page.evaluate(async ({ url, token, seconds, pauseAt, resumeAt }) => {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    const pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) {
      const init = { direction: 'sendonly', streams: [stream] };
      if (track.kind === 'video') {
        init.sendEncodings = [
          { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 300000 },
          { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 900000 },
          { rid: 'f', maxBitrate: 2500000 },
        ];
      }
      const t = pc.addTransceiver(track, init);
      if (track.kind === 'video') {
        const codecs = RTCRtpSender.getCapabilities('video').codecs;
        const h264 = (c) => c.mimeType.toLowerCase() === 'video/h264';
        t.setCodecPreferences([...codecs.filter(h264), ...codecs.filter((c) => !h264(c))]);
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 3000);
    });
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` }, body: pc.localDescription.sdp });
    const answer = await res.text();
    if (res.status !== 201) return { whipStatus: res.status, answer };
    const session = new URL(res.headers.get('location'), url).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    const publishedAt = Date.now();
    const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
    // The full layer made inactive and active again (sendEncodings[i].active),
    // as a browser does when bandwidth or CPU runs short.
    const events = [];
    const setFull = async (active) => {
      const sender = pc.getSenders().find((s) => s.track?.kind === 'video');
      const p = sender.getParameters();
      p.encodings.find((e) => e.rid === 'f').active = active;
      await sender.setParameters(p);
      events.push({ at: (Date.now() - publishedAt) / 1000, fullActive: active });
    };
    if (pauseAt >= 0) {
      await sleep(pauseAt * 1000 - (Date.now() - publishedAt));
      await setFull(false);
      await sleep(resumeAt * 1000 - (Date.now() - publishedAt));
      await setFull(true);
    }
    await sleep(seconds * 1000 - (Date.now() - publishedAt));
    const layers = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        layers.push({ rid: s.rid, width: s.frameWidth, height: s.frameHeight, frames: s.framesEncoded, bytes: s.bytesSent, encoder: s.encoderImplementation });
      }
    });
    layers.sort((a, b) => (a.rid < b.rid ? -1 : 1));
    return { whipStatus: res.status, answerSimulcast: answer.split('\r\n').filter((l) => l.startsWith('a=simulcast')), layers, events, publishedSeconds: (Date.now() - publishedAt) / 1000, session };
  }, { url: started.ingest.url, token: started.ingest.token, seconds, pauseAt, resumeAt }));
  await fetch(`${origin}/streams/${name}/stop-ingest`, { method: 'POST' });
  if (report.session) await fetch(report.session, { method: 'DELETE', headers: { authorization: `Bearer ${started.ingest.token}` } });
} catch (e) {
  report.errors.push(`driver: ${e.message}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
