// A simulcast publisher in headless Chromium: the studio page with its
// simulcast box ticked sends the fake camera at 1280x720 as three H.264
// encodings (rids q, h, f: a quarter, half and full resolution) over WHIP
// for N seconds, then its Stop button (stop-ingest and WHIP DELETE).
//
//   node simulcast.mjs --origin http://127.0.0.1:PORT --name STREAM --seconds 10
//        [--pause-at 4 --resume-at 8]   # the full layer inactive in between
//        [--reconnect-at 5 [--reconnect-single]]
//
// --reconnect-at N: at N seconds the publisher leaves (WHIP DELETE, its
// PeerConnection closed, no stop-ingest) and publishes again at once to
// the same WHIP URL, with simulcast again or, with --reconnect-single, one
// encoding (the studio's whipPublish without simulcast).
//
// Prints one JSON report line (each layer's sent size and frames, from
// getStats; the studio's statistics line); the Rust test judges the
// recording.
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
const reconnectAt = Number(arg('reconnect-at', '-1'));
const reconnectSingle = process.argv.includes('--reconnect-single');

const ARGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--no-sandbox', '--disable-gpu',
  '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const report = { errors: [], console: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
try {
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const studio = await context.newPage();
  studio.on('console', (m) => { if (m.type() === 'error') report.console.push(m.text()); });
  studio.on('pageerror', (e) => report.errors.push(`studio: ${e.message}`));
  await studio.goto(`${origin}/studio.html`);
  await studio.fill('#name', name);
  await studio.check('#simulcast');
  await studio.click('#create-btn');
  await studio.waitForFunction(() => document.getElementById('whip-token').value.length > 0, null, { timeout: 10000 });
  await studio.waitForFunction(() => window.studio.media, null, { timeout: 10000 });
  await studio.click('#publish');
  await studio.waitForFunction(() => window.studio.pc?.remoteDescription, null, { timeout: 15000 });
  const publishedAt = Date.now();
  report.answerSimulcast = await studio.evaluate(() => window.studio.pc.remoteDescription.sdp.split('\r\n').filter((l) => l.startsWith('a=simulcast')));
  // The full layer made inactive and active again (sendEncodings[i].active),
  // as a browser does when bandwidth or CPU runs short.
  report.events = [];
  const setFull = async (active) => {
    await studio.evaluate(async (active) => {
      const sender = window.studio.pc.getSenders().find((s) => s.track?.kind === 'video');
      const p = sender.getParameters();
      p.encodings.find((e) => e.rid === 'f').active = active;
      await sender.setParameters(p);
    }, active);
    report.events.push({ at: (Date.now() - publishedAt) / 1000, fullActive: active });
  };
  if (pauseAt >= 0) {
    await sleep(pauseAt * 1000 - (Date.now() - publishedAt));
    await setFull(false);
    await sleep(resumeAt * 1000 - (Date.now() - publishedAt));
    await setFull(true);
  }
  if (reconnectAt >= 0) {
    await sleep(reconnectAt * 1000 - (Date.now() - publishedAt));
    report.reconnect = await studio.evaluate(async (simulcast) => {
      const { whipPublish, whipEnd } = await import('/api.js');
      const s = window.studio;
      await whipEnd(s.session, s.token);
      s.pc.close();
      const { pc, session } = await whipPublish(s.whip, s.token, s.media, null, { simulcast });
      s.pc = pc;
      s.session = session;
      return { simulcast, answerSimulcast: pc.remoteDescription.sdp.split('\r\n').filter((l) => l.startsWith('a=simulcast')) };
    }, !reconnectSingle);
    report.events.push({ at: (Date.now() - publishedAt) / 1000, reconnected: !reconnectSingle ? 'simulcast' : 'single' });
  }
  await sleep(seconds * 1000 - (Date.now() - publishedAt));
  report.layers = await studio.evaluate(async () => {
    const layers = [];
    (await window.studio.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        layers.push({ rid: s.rid, width: s.frameWidth, height: s.frameHeight, frames: s.framesEncoded, bytes: s.bytesSent, encoder: s.encoderImplementation });
      }
    });
    return layers.sort((a, b) => (a.rid < b.rid ? -1 : 1));
  });
  report.studioStats = await studio.textContent('#stats');
  report.publishedSeconds = (Date.now() - publishedAt) / 1000;
  await studio.click('#stop');
  await studio.waitForFunction(() => document.getElementById('connection').textContent === 'closed', null, { timeout: 10000 });
  report.studioMessage = await studio.textContent('#message');
} catch (e) {
  report.errors.push(`driver: ${e.message}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
