// Glass-to-glass latency in headless Chromium: the studio page publishes a
// picture that carries the time it was drawn, the player page shows it, and
// the time is read back from the shown frame. Publisher and players run in
// one browser, so they share one clock.
//
//   node latency.mjs --origin http://127.0.0.1:PORT --name STREAM
//        [--fragment-ms 2000] [--seconds 20] [--formats smooth,dash,hls]
//
// The studio page is the product's; only its camera is replaced: an init
// script makes getUserMedia return a 320x240 canvas at 30 fps (plus a tone),
// which draws, every frame, Date.now() mod 2^32 as 32 black or white blocks
// of 20x20 pixels (rows 0-1, most significant bit first) and the same bits
// inverted below them (rows 2-3), so a frame damaged by the encoder is
// recognised and not read. One player page per format (player.html?format=)
// watches for --seconds after it shows LIVE; twice a second the frame on
// screen is drawn into a canvas and its stamp read.
//
// Prints one JSON line: per format, the stamps read and the latencies (ms).
import { chromium } from 'playwright-core';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const origin = arg('origin');
const name = arg('name', 'latency');
const fragmentMs = Number(arg('fragment-ms', '2000'));
const seconds = Number(arg('seconds', '20'));
const formats = arg('formats', 'smooth,dash,hls').split(',');

const ARGS = [
  '--use-fake-ui-for-media-stream', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required', '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows',
];
const report = { fragmentMs, errors: [], console: [], formats: {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const api = async (p, method = 'GET', body) => {
  const r = await fetch(`${origin}${p}`, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  return { status: r.status, body: await r.json().catch(() => null) };
};

// The stamped camera (runs in the studio page before its scripts).
function stampedCamera() {
  navigator.mediaDevices.getUserMedia = async () => {
    const c = document.createElement('canvas');
    c.width = 320;
    c.height = 240;
    const g = c.getContext('2d');
    const draw = () => {
      const now = Date.now();
      g.fillStyle = `hsl(${Math.floor(now / 40) % 360}, 50%, 45%)`;
      g.fillRect(0, 0, 320, 240);
      g.fillStyle = '#ddd';
      g.fillRect(Math.floor(now / 10) % 300, 150, 20, 20);
      const v = now % 4294967296;
      for (let i = 0; i < 32; i++) {
        const bit = Math.floor(v / 2 ** (31 - i)) % 2;
        const x = (i % 16) * 20;
        const y = Math.floor(i / 16) * 20;
        g.fillStyle = bit ? '#fff' : '#000';
        g.fillRect(x, y, 20, 20);
        g.fillStyle = bit ? '#000' : '#fff';
        g.fillRect(x, y + 40, 20, 20);
      }
    };
    draw();
    setInterval(draw, 1000 / 30);
    const video = c.captureStream(30);
    const ac = new AudioContext();
    const osc = ac.createOscillator();
    const dst = ac.createMediaStreamDestination();
    osc.connect(dst);
    osc.start();
    return new MediaStream([...video.getVideoTracks(), ...dst.stream.getAudioTracks()]);
  };
}

// Reads the stamp of the frame on screen (runs in a player page): the
// latency in ms, or null when no whole stamp is visible.
function readStamp() {
  const v = document.getElementById('video');
  if (!v || v.readyState < 2 || v.videoWidth === 0) return null;
  const c = window.stampCanvas ?? (window.stampCanvas = document.createElement('canvas'));
  c.width = 320;
  c.height = 240;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(v, 0, 0, 320, 240);
  const px = g.getImageData(0, 0, 320, 80).data;
  const luma = (x, y) => { const i = (y * 320 + x) * 4; return (px[i] + px[i + 1] + px[i + 2]) / 3; };
  let value = 0;
  for (let i = 0; i < 32; i++) {
    const x = (i % 16) * 20 + 10;
    const y = Math.floor(i / 16) * 20 + 10;
    const bit = luma(x, y) > 128 ? 1 : 0;
    const guard = luma(x, y + 40) > 128 ? 1 : 0;
    if (bit === guard) return null;
    value = value * 2 + bit;
  }
  const now = Date.now() % 4294967296;
  return (now - value + 4294967296) % 4294967296;
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
try {
  const created = await api(`/streams/${name}`, 'PUT', {
    outputs: [{ name: 'smooth', format: 'smooth' }, { name: 'dash', format: 'dash' }, { name: 'hls', format: 'hls' }],
    fragmentDurationMs: fragmentMs,
  });
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`);
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const studio = await context.newPage();
  await studio.addInitScript(stampedCamera);
  studio.on('pageerror', (e) => report.errors.push(`studio: ${e.message}`));
  studio.on('console', (m) => { if (m.type() === 'error') report.console.push(`studio: ${m.text()}`); });
  await studio.goto(`${origin}/studio.html`);
  await studio.fill('#name', name);
  await studio.click('#create-btn');
  await studio.waitForFunction(() => document.getElementById('whip-token').value.length > 0, null, { timeout: 10000 });
  await studio.click('#publish');
  const published = Date.now();
  while (Date.now() - published < 15000) {
    if ((await api(`/streams/${name}`)).body?.state === 'Live') break;
    await sleep(200);
  }
  report.liveAfterMs = Date.now() - published;
  report.studioMessage = await studio.textContent('#message');

  // Every 5 s, where media waits: the publisher's encoder and pacer (its
  // getStats) and the node (the stream's `stats.delays`), so that a shift
  // in availability shows where it arose.
  report.pipeline = [];
  let watching = true;
  const pipeline = (async () => {
    let prev = null;
    while (watching) {
      await sleep(5000);
      const o = await studio.evaluate(async () => {
        let out = null;
        (await window.studio.pc?.getStats())?.forEach((x) => {
          if (x.type === 'outbound-rtp' && x.kind === 'video') out = { framesEncoded: x.framesEncoded, totalEncodeTime: x.totalEncodeTime, packetsSent: x.packetsSent, totalPacketSendDelay: x.totalPacketSendDelay, fps: x.framesPerSecond, width: x.frameWidth, limitation: x.qualityLimitationReason };
        });
        return out;
      }).catch(() => null);
      const st = (await api(`/streams/${name}`).catch(() => null))?.body?.stats;
      const e = { s: Math.round((Date.now() - published) / 1000) };
      if (o && prev) {
        const frames = o.framesEncoded - prev.framesEncoded;
        const packets = o.packetsSent - prev.packetsSent;
        e.encodeMs = frames > 0 ? Math.round(((o.totalEncodeTime - prev.totalEncodeTime) / frames) * 10000) / 10 : null;
        e.pacerMs = packets > 0 ? Math.round(((o.totalPacketSendDelay - prev.totalPacketSendDelay) / packets) * 10000) / 10 : null;
        Object.assign(e, { fps: o.fps, width: o.width, limitation: o.limitation });
      }
      prev = o;
      if (st?.delays) Object.assign(e, { transitMs: st.delays.videoTransitMs, queueMs: st.delays.queueMs, keyframeMs: st.delays.keyframeMs, storeMs: st.delays.storeMs, late: st.fragmentsLate });
      report.pipeline.push(e);
    }
  })();

  await Promise.all(formats.map(async (format) => {
    const r = { latencies: [], samples: 0, unread: 0, stalls: 0, recoveries: 0, errors: [] };
    report.formats[format] = r;
    const page = await context.newPage();
    page.on('pageerror', (e) => r.errors.push(`pageerror: ${e.message}`));
    await page.goto(`${origin}/player.html?name=${name}&format=${format}`);
    const opened = Date.now();
    await page.waitForFunction(() => window.playerView?.mode === 'live', null, { timeout: 30000 });
    // From the page showing LIVE to the first frame drawn.
    let last = null;
    const start = Date.now();
    while (Date.now() - start < seconds * 1000) {
      await sleep(500);
      const s = await page.evaluate(`(() => { const l = (${readStamp})(); const v = document.getElementById('video');
        let ahead = null; for (let i = 0; i < v.buffered.length; i++) if (v.buffered.start(i) <= v.currentTime + 0.1 && v.buffered.end(i) >= v.currentTime) ahead = v.buffered.end(i) - v.currentTime;
        const p = window.dashPlayer; let target = null; let dl = null; try { target = p && p.isReady() ? p.getTargetLiveDelay() : null; dl = p && p.isReady() ? p.getCurrentLiveLatency() : null; } catch (e) {}
        return { l, t: v.currentTime, ahead, target, dl, errors: window.playerView.errors.slice(), recoveries: window.playerView.recoveries }; })()`);
      (r.ahead ??= []).push(s.ahead === null ? null : Math.round(s.ahead * 100) / 100);
      r.target = s.target;
      (r.dashLatency ??= []).push(s.dl);
      r.samples += 1;
      if (s.l === null) r.unread += 1; else r.latencies.push(s.l);
      if (r.firstFrameMs === undefined && s.l !== null) r.firstFrameMs = Date.now() - opened;
      // A sample a second after the last whose position has not moved.
      if (last !== null && r.samples % 2 === 0 && s.t === last) r.stalls += 1;
      if (r.samples % 2 === 0) last = s.t;
      r.errors = r.errors.filter((e) => e.startsWith('pageerror')).concat(s.errors);
      r.recoveries = s.recoveries;
    }
    const sorted = r.latencies.slice().sort((a, b) => a - b);
    const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
    if (sorted.length) Object.assign(r, { p50: q(0.5), p90: q(0.9), min: sorted[0], max: sorted[sorted.length - 1] });
    await page.close();
  }));
  watching = false;
  await pipeline;
  // The live manifest's video fragment durations (ms), in order: a
  // publisher slow to answer keyframe requests makes them longer.
  const manifest = await fetch(created.body.outputs.find((o) => o.format === 'smooth').url).then((r) => r.text()).catch(() => '');
  const video = manifest.split('<StreamIndex').find((x) => /Type="video"/.test(x)) ?? '';
  report.videoFragmentsMs = [...video.matchAll(/<c [^>]*d="(\d+)"(?: [^>]*r="(\d+)")?/g)].flatMap((m) => Array(Number(m[2] ?? 1)).fill(Math.round(Number(m[1]) / 1e4)));
  await studio.click('#stop');
} catch (e) {
  report.errors.push(`driver: ${e.stack ?? e.message}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
