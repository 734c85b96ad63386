// Plays a Smooth Streaming (or DASH) URL with dash.js in headless Debian
// Chromium and reports what the player did, as one JSON line on stdout.
//
//   node play.mjs --origin http://127.0.0.1:PORT --url MANIFEST_URL \
//        --mode vod|live --seconds N [--player dashjs|hlsjs] [--screenshot FILE]
//        [--switch-levels]
//
// dash.js plays Smooth Streaming and DASH; hls.js plays HLS.
//
// vod:  plays to the end; reports duration and the final position.
// live: follows the stream for N seconds; reports the positions seen.
// --switch-levels (dash.js and hls.js, vod and live): automatic bitrate
//       switching off; the highest video level (by bandwidth) from the
//       start, the lowest asked for at a third of the watch, the highest
//       again at two thirds. vod: a third of the duration (the element's,
//       else N) as the playhead passes it; live: a third of N seconds after
//       the page started the player. Levels are checked once a second.
//       dash.js: abr.autoSwitchBitrate.video false, abr.initialBitrate.video
//       above every level, a 4 s buffer, and
//       setRepresentationForTypeById('video', id) without forceReplace, so
//       a switch shows from the next fragment after the buffer. hls.js:
//       startLevel and loadLevel on the top level once the manifest is
//       parsed, then hls.nextLevel (switches at the next fragment, flushing
//       what was buffered past it).
//       The report gains: levels (the player's video levels in its own
//       order: index, id (dash.js), bandwidth (hls.js: bitrate), width,
//       height); switches (each request: at, wall seconds; t, the position;
//       want, highest|lowest; level, the index in levels; to, its
//       bandwidth; width, height); sizesPlayed (the element's
//       videoWidthxvideoHeight in order, consecutive repeats dropped, 0x0
//       left out, looked at every 20 ms) and sizeChanges (the same with
//       the position t of each change); stalls (`waiting` events after the
//       first `playing`, seeks included) and stallsAt (their positions);
//       errorEvents (dash.js `error` and `playbackError` events; hls.js
//       Hls.Events.ERROR, fatal or not), fatalErrorEvents (hls.js: those
//       with fatal; dash.js null) and errorEventDetails (the first 20).
//       Each sample gains level (the index in levels of what the player says
//       is playing: dash.js getCurrentRepresentationForType('video'), i.e.
//       the level being fetched; hls.js hls.currentLevel, the level of the
//       fragment at the playhead) and, for hls.js, bandwidth (that level's
//       bitrate; dash.js samples always have it). A sample's width and
//       height are the element's videoWidth and videoHeight.
// --dvr N (live): at a third of the watch seeks N seconds back (within the
//       DVR window), at two thirds returns to the live edge (as the player
//       page's Go live: dash.js seekToOriginalLive, or for Smooth a reload
//       of the manifest; hls.js liveSyncPosition); samples report the
//       player's live latency (dash.js getCurrentLiveLatency, hls.js
//       latency) and the report lists the two seeks (dvr).
// --stock (dash.js): no setting changed at all. Otherwise dash.js takes its
//       clock from our origin as the player page does (/time at the
//       origin's root, else the manifest's Date), instead of its default
//       public time server.
// The report lists every request to an origin other than --origin
// (foreignRequests), the statuses of requests to our origin's /time
// (timeRequests), playbackEnded (dash.js's own end event) and maxTime
// (the furthest position played). PLAY_DEBUG=1 in the environment adds
// dash.js's debug lines about buffering and the end to the report.
// Exit status 0 when the page ran; the caller judges the numbers.
import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dashDir = path.join(here, '..', 'node_modules', 'dashjs', 'dist', 'modern', 'umd');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const origin = arg('origin');
const url = arg('url');
const mode = arg('mode', 'vod');
const seconds = Number(arg('seconds', '30'));
const screenshot = arg('screenshot');
const playerKind = arg('player', 'dashjs');
const switchLevels = process.argv.includes('--switch-levels');
const stock = process.argv.includes('--stock');
const dvrBack = Number(arg('dvr', '0'));
const hlsDir = path.join(here, '..', 'node_modules', 'hls.js', 'dist');

export const CHROMIUM_ARGS = [
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--no-sandbox',
  '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
];

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
const result = { mode, samples: [], errors: [], console: [] };
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || (process.env.PLAY_DEBUG && /ended|EndOfStream|endOfStream|applicable|Ended|duration|Duration|seek|Seek|BUFFERING|replace|Replace|Gap|gap|waiting|stalled|Stalled|prun|remov|Remov|range|Range|FragmentInfo|Start|timeline|Load error|DVR/.test(m.text()))) result.console.push(m.text()); });
  page.on('pageerror', (e) => result.errors.push(`pageerror: ${e.message}`));
  result.failedRequests = [];
  // The answers of our origin's clock (/time), which dash.js reads
  // unless --stock.
  result.timeRequests = [];
  page.on('response', (r) => {
    if (r.status() >= 400) result.failedRequests.push(`${r.status()} ${r.url()}`);
    if (/^https?:/.test(r.url()) && new URL(r.url()).pathname === '/time') result.timeRequests.push(r.status());
  });
  if (process.env.PLAY_DEBUG) {
    result.requests = [];
    const t0 = Date.now();
    page.on('requestfinished', async (r) => { const resp = await r.response(); result.requests.push(`${((Date.now() - t0) / 1000).toFixed(1)} ${resp ? resp.status() : '-'} ${r.url().replace(origin, '')}`); });
  }
  result.foreignRequests = [];
  const ours = new URL(origin).origin;
  page.on('request', (r) => {
    const u = r.url();
    if (/^https?:/.test(u) && new URL(u).origin !== ours) result.foreignRequests.push(`${r.method()} ${u}`);
  });
  page.on('requestfailed', (r) => {
    const u = r.url();
    if (/^https?:/.test(u) && new URL(u).origin !== ours && !result.foreignRequests.includes(`${r.method()} ${u}`)) result.foreignRequests.push(`${r.method()} ${u}`);
  });
  await page.goto(`${origin}/healthz`);
  await page.setContent('<!doctype html><html><body><video id="v" muted playsinline style="width:640px"></video><canvas id="c" width="64" height="48"></canvas></body></html>');
  // The furthest position played, looked at every 20 ms (samples are 1 s
  // apart, timeupdate 250 ms).
  await page.evaluate((process_debug) => {
    window.maxTime = 0;
    const v = document.getElementById('v');
    window.endTrace = [];
    // For --switch-levels: the sizes shown, and the stalls (`waiting`
    // after the first `playing`).
    window.sizeChanges = [];
    const size = () => {
      if (v.videoWidth === 0) return;
      const now = `${v.videoWidth}x${v.videoHeight}`;
      const last = window.sizeChanges[window.sizeChanges.length - 1];
      if (!last || last.size !== now) window.sizeChanges.push({ t: v.currentTime, size: now });
    };
    v.addEventListener('resize', size);
    window.stallsAt = [];
    let playing = false;
    v.addEventListener('playing', () => { playing = true; });
    v.addEventListener('waiting', () => { if (playing) window.stallsAt.push(v.currentTime); });
    setInterval(() => {
      size();
      if (!v.seeking) window.maxTime = Math.max(window.maxTime, v.currentTime);
      if (process_debug && v.duration - v.currentTime < 0.3 && window.endTrace.length < 80) {
        const b = [];
        for (let i = 0; i < v.buffered.length; i++) b.push([v.buffered.start(i), v.buffered.end(i)]);
        window.endTrace.push([performance.now() | 0, v.currentTime, v.readyState, v.paused, v.ended, v.seeking, JSON.stringify(b), v.duration]);
      }
    }, 20);
    for (const ev of ['waiting', 'stalled', 'ended', 'pause', 'seeking', 'durationchange']) v.addEventListener(ev, () => { if (process_debug) window.endTrace.push([performance.now() | 0, ev, v.currentTime, v.duration]); });
  }, Boolean(process.env.PLAY_DEBUG));
  if (playerKind === 'hlsjs') {
    await page.addScriptTag({ path: path.join(hlsDir, 'hls.min.js') });
    await page.evaluate(({ manifest, switchLevels }) => {
      window.playerErrors = [];
      window.errorEvents = { count: 0, fatal: 0, details: [] };
      const v = document.getElementById('v');
      const hls = new Hls();
      window.hlsPlayer = hls;
      hls.on(Hls.Events.ERROR, (_e, d) => {
        if (d.fatal) window.playerErrors.push(`${d.type}: ${d.details}`);
        window.errorEvents.count += 1;
        if (d.fatal) window.errorEvents.fatal += 1;
        if (window.errorEvents.details.length < 20) window.errorEvents.details.push(`${d.fatal ? 'fatal ' : ''}${d.type}: ${d.details} at ${v.currentTime.toFixed(2)}`);
      });
      if (switchLevels) {
        // hls.js sorts its levels by bitrate; the top one by bitrate all
        // the same.
        const top = () => hls.levels.reduce((best, l, i) => (best < 0 || l.bitrate > hls.levels[best].bitrate ? i : best), -1);
        hls.on(Hls.Events.MANIFEST_PARSED, () => { hls.startLevel = top(); hls.loadLevel = top(); });
        window.videoLevels = () => (hls.levels ?? []).map((l, index) => ({ index, bandwidth: l.bitrate, width: l.width, height: l.height }));
        window.playingLevel = () => (hls.currentLevel >= 0 ? hls.currentLevel : null);
        window.playingBandwidth = () => hls.levels?.[hls.currentLevel]?.bitrate ?? null;
        window.setLevel = (index) => { if (hls.autoLevelEnabled || hls.loadLevel !== index) hls.nextLevel = index; };
      }
      hls.loadSource(manifest);
      hls.attachMedia(v);
      v.play().catch(() => {});
      window.isDynamic = () => Boolean(hls.latestLevelDetails && hls.latestLevelDetails.live);
      window.liveLatency = () => (Number.isFinite(hls.latency) ? hls.latency : null);
      window.seekBack = (n) => { v.currentTime = Math.max(0, v.currentTime - n); };
      window.seekLive = () => { if (Number.isFinite(hls.liveSyncPosition)) v.currentTime = hls.liveSyncPosition; };
    }, { manifest: url, switchLevels });
  } else {
    await page.addScriptTag({ path: path.join(dashDir, 'dash.all.min.js') });
    await page.addScriptTag({ path: path.join(dashDir, 'dash.mss.min.js') });
    await page.evaluate(({ manifest, switchLevels, stock, debug }) => {
      window.playerErrors = [];
      window.playbackEnded = false;
      const player = dashjs.MediaPlayer().create();
      window.dashPlayer = player;
      if (!stock) {
        player.updateSettings({
          debug: { logLevel: debug ? dashjs.Debug.LOG_LEVEL_DEBUG : dashjs.Debug.LOG_LEVEL_WARNING },
          streaming: {
            // As the player page: our origin's clock, else the manifest's Date.
            utcSynchronization: { defaultTimingSource: { scheme: 'urn:mpeg:dash:utc:http-xsdate:2014', value: new URL('/time', manifest).href } },
            // dash.js 5.2 ends a recording itself when its 200 ms timer sees
            // the playhead at the duration before the element's own `ended`
            // (which follows some milliseconds later), then seeks back
            // seekDurationBackoff (0.5 s) and pauses: the viewer is left
            // half a second before the end. With 0 it stays at the end.
            seekDurationBackoff: 0,
          },
        });
      }
      // Switching levels as ABR does, at the next fragment: a short buffer
      // (4 s), so the fragments after the switch are fetched after it.
      // (A forced replacement of the buffered video, setRepresentationForTypeById
      // with forceReplace, made dash.js 5.2 miss the end of the recording
      // about one run in three: it re-buffers the video alone after the
      // audio has completed, and the element then never fires `ended`.)
      // The first fragments come from the top level: an initial bitrate
      // (kbit/s) above every level.
      if (switchLevels) player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false }, initialBitrate: { video: 1e9 } }, buffer: { bufferTimeDefault: 4, bufferTimeAtTopQuality: 4, bufferTimeAtTopQualityLongForm: 4 } } });
      window.errorEvents = { count: 0, fatal: null, details: [] };
      const errorEvent = (what) => { window.errorEvents.count += 1; if (window.errorEvents.details.length < 20) window.errorEvents.details.push(what); };
      player.on(dashjs.MediaPlayer.events.PLAYBACK_ENDED, () => { window.playbackEnded = true; });
      player.on(dashjs.MediaPlayer.events.ERROR, (e) => { window.playerErrors.push(JSON.stringify(e.error ?? e)); errorEvent(JSON.stringify(e.error ?? e)); });
      player.on(dashjs.MediaPlayer.events.PLAYBACK_ERROR, (e) => { window.playerErrors.push(`playback: ${JSON.stringify(e.error ?? e)}`); errorEvent(`playback: ${JSON.stringify(e.error ?? e)}`); });
      if (switchLevels) {
        // Throws until the stream is initialised: no levels yet.
        window.videoLevels = () => {
          try { return (player.getRepresentationsByType('video') ?? []).map((r, index) => ({ index, id: r.id, bandwidth: r.bandwidth, width: r.width, height: r.height })); } catch { return []; }
        };
        window.playingLevel = () => {
          try { const id = player.getCurrentRepresentationForType('video')?.id; const i = window.videoLevels().findIndex((l) => l.id === id); return i >= 0 ? i : null; } catch { return null; }
        };
        window.setLevel = (index) => player.setRepresentationForTypeById('video', window.videoLevels()[index].id, false);
      }
      player.initialize(document.getElementById('v'), manifest, true);
      window.isDynamic = () => player.isDynamic();
      window.liveLatency = () => { const l = player.getCurrentLiveLatency(); return Number.isFinite(l) ? l : null; };
      window.seekBack = (n) => { const v = document.getElementById('v'); v.currentTime = Math.max(0, v.currentTime - n); };
      // As the player page does (web/public/player.js, goLive): dash.js
      // finds the live edge of a Smooth stream only by re-reading its
      // manifest; a DASH one it finds itself.
      window.seekLive = () => (/\.ism\/Manifest/i.test(manifest) ? player.attachSource(manifest) : player.seekToOriginalLive());
    }, { manifest: url, switchLevels, stock, debug: Boolean(process.env.PLAY_DEBUG) });
  }
  const started = Date.now();
  const limit = mode === 'vod' ? (seconds * 2 + 30) * 1000 : seconds * 1000;
  const switches = [];
  const dvr = [];
  while (Date.now() - started < limit) {
    await page.waitForTimeout(1000);
    if (mode === 'live' && dvrBack > 0) {
      const at = (Date.now() - started) / 1000;
      const step = dvr.length === 0 && at >= seconds / 3 ? 'back' : dvr.length === 1 && at >= (seconds * 2) / 3 ? 'live' : null;
      if (step) {
        const before = await page.evaluate(() => ({ t: document.getElementById('v').currentTime, latency: window.liveLatency() }));
        await page.evaluate((n) => (n > 0 ? window.seekBack(n) : window.seekLive()), step === 'back' ? dvrBack : 0);
        dvr.push({ step, at, ...before });
        result.dvr = dvr;
      }
    }
    if (switchLevels) {
      // Highest from the start, lowest at a third, highest at two thirds:
      // of the duration by the playhead (vod), of N seconds by the clock
      // (live).
      const at = (Date.now() - started) / 1000;
      const pos = await page.evaluate(() => { const v = document.getElementById('v'); return { t: v.currentTime, duration: v.duration }; });
      const length = Number.isFinite(pos.duration) && pos.duration > 0 ? pos.duration : seconds;
      const progress = mode === 'vod' ? pos.t / length : at / seconds;
      const step = switches.length;
      const want = step === 0 ? 'highest' : step === 1 && progress >= 1 / 3 ? 'lowest' : step === 2 && progress >= 2 / 3 ? 'highest' : null;
      if (want) {
        const chosen = await page.evaluate((want) => {
          const levels = window.videoLevels();
          if (levels.length === 0) return null;
          const pick = levels.reduce((a, b) => ((want === 'lowest' ? b.bandwidth < a.bandwidth : b.bandwidth > a.bandwidth) ? b : a));
          window.setLevel(pick.index);
          return pick;
        }, want);
        if (chosen !== null) {
          switches.push({ at, t: pos.t, want, level: chosen.index, to: chosen.bandwidth, width: chosen.width, height: chosen.height });
          result.switches = switches;
        }
      }
    }
    const s = await page.evaluate(() => {
      const v = document.getElementById('v');
      // Is the frame on screen non-blank? Sample it into a tiny canvas.
      let lit = 0;
      try {
        const c = document.getElementById('c');
        const ctx = c.getContext('2d');
        ctx.drawImage(v, 0, 0, c.width, c.height);
        const px = ctx.getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < px.length; i += 4) seen.add((px[i] >> 4) * 256 + (px[i + 1] >> 4) * 16 + (px[i + 2] >> 4));
        lit = seen.size;
      } catch (e) { lit = -1; }
      return {
        t: v.currentTime, duration: v.duration, ended: v.ended, paused: v.paused,
        width: v.videoWidth, height: v.videoHeight, readyState: v.readyState,
        dynamic: window.isDynamic(), colours: lit, errors: window.playerErrors.slice(), playbackEnded: window.playbackEnded ?? null, maxTime: window.maxTime, endTrace: window.endTrace,
        // The end: the element's `ended`, or dash.js's own end (above) with
        // the playhead within a frame of the duration.
        atEnd: v.ended || (Boolean(window.playbackEnded) && v.duration - v.currentTime < 0.034),
        bandwidth: window.playingBandwidth ? window.playingBandwidth() : window.dashPlayer?.getCurrentRepresentationForType?.('video')?.bandwidth ?? null,
        ...(window.playingLevel ? { level: window.playingLevel() } : {}),
        levelReport: window.videoLevels ? {
          levels: window.videoLevels(), sizeChanges: window.sizeChanges, stallsAt: window.stallsAt, errorEvents: window.errorEvents,
        } : undefined,
        latency: window.liveLatency ? window.liveLatency() : null, seeking: v.seeking,
        // Bytes of audio the element decoded (Chromium): audio plays too.
        audioBytes: v.webkitAudioDecodedByteCount ?? null,
      };
    });
    result.samples.push({ at: (Date.now() - started) / 1000, ...s, errors: undefined, levelReport: undefined });
    if (s.levelReport) {
      const r = s.levelReport;
      if (r.levels.length > 0) result.levels = r.levels;
      result.switches = switches;
      result.sizesPlayed = r.sizeChanges.map((c) => c.size);
      result.sizeChanges = r.sizeChanges;
      result.stalls = r.stallsAt.length;
      result.stallsAt = r.stallsAt;
      result.errorEvents = r.errorEvents.count;
      result.fatalErrorEvents = r.errorEvents.fatal;
      result.errorEventDetails = r.errorEvents.details;
    }
    result.errors = s.errors.concat(result.errors.filter((e) => e.startsWith('pageerror')));
    if (mode === 'vod' && s.atEnd) break;
  }
  if (screenshot) await page.screenshot({ path: screenshot });
} catch (e) {
  result.errors.push(`driver: ${e.message}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
