// The product end to end in headless Chromium: publish the fake camera and
// microphone from the studio page over WHIP, watch live in the player page,
// stop, and watch the recording on demand without reloading.
//
//   node e2e.mjs --origin http://127.0.0.1:PORT --name STREAM --seconds 20 --artifacts DIR
//
// Prints one JSON report line; the Rust test judges it.
import { chromium } from 'playwright-core';
import path from 'node:path';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const origin = arg('origin');
const name = arg('name', 'e2e');
const seconds = Number(arg('seconds', '20'));
const artifacts = arg('artifacts', '.');

const ARGS = [
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--no-sandbox',
  '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
];
const report = { errors: [], console: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const api = async (p, method = 'GET') => (await fetch(`${origin}${p}`, { method })).json();

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
try {
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const studio = await context.newPage();
  studio.on('console', (m) => { if (m.type() === 'error') report.console.push(`studio: ${m.text()}`); });
  studio.on('pageerror', (e) => report.errors.push(`studio: ${e.message}`));
  await studio.goto(`${origin}/studio.html`);
  await studio.fill('#name', name);
  await studio.click('#create-btn');
  await studio.waitForFunction(() => document.getElementById('whip-token').value.length > 0, null, { timeout: 10000 });
  await studio.waitForFunction(() => window.studio.media, null, { timeout: 10000 });
  await studio.click('#publish');
  const published = Date.now();
  // Live within a few seconds of publishing.
  let liveAfter = null;
  while (Date.now() - published < 15000) {
    const s = await api(`/streams/${name}`);
    if (s.state === 'Live') { liveAfter = (Date.now() - published) / 1000; break; }
    await sleep(200);
  }
  report.liveAfter = liveAfter;
  report.studioMessage = await studio.textContent('#message');
  report.connection = await studio.textContent('#connection');

  // Watch live.
  await sleep(8000);
  const player = await context.newPage();
  report.failedRequests = [];
  report.requests = [];
  player.on('response', (res) => {
    const u = res.url();
    if (u.includes('/media/')) report.requests.push(`${((Date.now() - published) / 1000).toFixed(1)} ${res.status()} ${u.replace(/^.*smooth\.ism\//, '')}`);
    if (res.status() >= 400) report.failedRequests.push(`${res.status()} ${u}`);
  });
  player.on('console', (m) => { if (m.type() === 'error') report.console.push(`player: ${m.text()}`); });
  player.on('pageerror', (e) => report.errors.push(`player: ${e.message}`));
  await player.goto(`${origin}/player.html?name=${name}`);
  const sample = () => player.evaluate(() => {
    const v = document.getElementById('video');
    const c = document.createElement('canvas');
    c.width = 64; c.height = 48;
    let colours = -1;
    try {
      c.getContext('2d').drawImage(v, 0, 0, 64, 48);
      const px = c.getContext('2d').getImageData(0, 0, 64, 48).data;
      const seen = new Set();
      for (let i = 0; i < px.length; i += 4) seen.add((px[i] >> 4) * 256 + (px[i + 1] >> 4) * 16 + (px[i + 2] >> 4));
      colours = seen.size;
    } catch (e) { /* not drawable yet */ }
    return { t: v.currentTime, duration: v.duration, width: v.videoWidth, height: v.videoHeight, paused: v.paused, ended: v.ended,
      mode: window.playerView.mode, switched: window.playerView.switched, recoveries: window.playerView.recoveries, errors: window.playerView.errors.slice(), colours,
      stats: document.getElementById('stats')?.textContent };
  });
  // The player starts once the live manifest lists a few fragments of
  // every track (see player.js); sampling begins when it shows LIVE.
  const opened = Date.now();
  await player.waitForFunction(() => window.playerView?.mode === 'live', null, { timeout: 30000 });
  report.playerLiveAfter = (Date.now() - opened) / 1000;
  report.live = [];
  const remaining = Math.max(seconds * 1000 - (Date.now() - published), 8000);
  const liveStart = Date.now();
  while (Date.now() - liveStart < remaining) {
    await sleep(1000);
    report.live.push(await sample());
  }
  report.studioStats = await studio.textContent('#stats');
  report.ingestStats = (await api(`/streams/${name}`)).stats ?? null;
  await studio.screenshot({ path: path.join(artifacts, 'studio.png') });
  await player.screenshot({ path: path.join(artifacts, 'player-live.png') });
  report.publishedSeconds = (Date.now() - published) / 1000;

  // Stop from the studio; the player switches to the recording.
  await studio.click('#stop');
  const stopped = Date.now();
  let onDemandAfter = null;
  while (Date.now() - stopped < 20000) {
    const s = await api(`/streams/${name}`);
    if (s.state === 'OnDemand') { onDemandAfter = (Date.now() - stopped) / 1000; break; }
    await sleep(200);
  }
  report.onDemandAfter = onDemandAfter;
  report.ondemand = [];
  const vodStart = Date.now();
  // Play the recording from the start to the end.
  let seeked = false;
  let lastOnDemandT = null;
  while (Date.now() - vodStart < (seconds + 40) * 1000) {
    await sleep(1000);
    const s = await sample();
    report.ondemand.push(s);
    // Seek back once the recording plays in place (position advancing in
    // on-demand mode), as a viewer would: not while the player is still
    // loading the on-demand manifest.
    const playing = s.mode === 'ondemand' && s.switched && ((lastOnDemandT !== null && s.t > lastOnDemandT) || s.ended);
    if (s.mode === 'ondemand' && s.switched) lastOnDemandT = s.t;
    if (playing && !seeked && s.duration > 0 && Number.isFinite(s.duration)) {
      await player.evaluate(() => { document.getElementById('video').currentTime = 0; document.getElementById('video').play(); });
      seeked = true;
      report.seekedAt = s.t;
    }
    // Done at the end (dash.js sometimes stops a fraction of a second
    // before it without firing 'ended': stopped near the end also counts).
    const near = seeked && s.duration - s.t <= 1 && report.ondemand.length >= 2 && report.ondemand[report.ondemand.length - 2].t === s.t;
    if (seeked && (s.ended || near)) break;
  }
  await player.screenshot({ path: path.join(artifacts, 'player-ondemand.png') });
} catch (e) {
  report.errors.push(`driver: ${e.stack ?? e.message}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
