// Plays a stream's Smooth Streaming output with dash.js (its DASH output
// when it has no Smooth one, and its HLS output with hls.js when it has
// only that; ?format= picks one). dash.js never re-reads a live Smooth
// manifest, so the page watches the stream's state: when it leaves Live and
// the recording is on demand, the player reloads the same URL at the same
// position, without a page reload.
import { api } from './api.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const name = params.get('name');
const view = { mode: null, switched: false, errors: [], url: null, recoveries: 0 };
window.playerView = view; // for the browser tests

function badge(mode) {
  view.mode = mode;
  $('golive').hidden = mode !== 'live';
  $('mode').textContent = mode === 'live' ? 'LIVE' : mode === 'ondemand' ? 'ON DEMAND' : mode;
  $('mode').className = `badge ${mode}`;
}

const player = dashjs.MediaPlayer().create();
player.updateSettings({
  debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
  streaming: {
    // A live fragment is written once the next one has closed (its tfrf
    // needs it), so stay a few fragments behind the live edge, and keep
    // asking for a fragment that is not there yet instead of giving up.
    delay: { liveDelayFragmentCount: 4 },
    retryAttempts: { MediaSegment: 20 },
    retryIntervals: { MediaSegment: 500 },
    // dash.js 5.2 ends a recording itself when its 200 ms timer sees the
    // playhead at the duration before the element's own `ended`, then
    // seeks back this much and pauses (a viewer is left 0.5 s before the
    // end, about one time in three): stay at the end instead.
    seekDurationBackoff: 0,
  },
});
player.on(dashjs.MediaPlayer.events.ERROR, (e) => {
  view.errors.push(JSON.stringify(e.error ?? e));
  $('message').textContent = `Player error: ${e.error?.message ?? 'see the console'}`;
});
window.dashPlayer = player;

/// Fragments a live Smooth manifest lists per stream type.
async function listedFragments(url) {
  const xml = new DOMParser().parseFromString(await (await fetch(url, { cache: 'no-store' })).text(), 'application/xml');
  const counts = {};
  for (const si of xml.querySelectorAll('StreamIndex')) counts[si.getAttribute('Type')] = si.querySelectorAll('c').length;
  return counts;
}

/// The live manifest is written once its tracks have a fragment each (a
/// stream goes Live at its first media, a fragment later): wait for it,
/// as dash.js gives up on a manifest it cannot load.
async function whenPlayable(url, live) {
  if (!live) return;
  for (;;) {
    try {
      const c = await listedFragments(url);
      if ((c.video ?? 0) >= 1) return;
    } catch { /* not written yet */ }
    $('message').textContent = 'Starting…';
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/// Video fragments a live DASH MPD lists (one S per fragment).
async function listedDashFragments(url) {
  const xml = new DOMParser().parseFromString(await (await fetch(url, { cache: 'no-store' })).text(), 'application/xml');
  const video = [...xml.querySelectorAll('AdaptationSet')].find((a) => a.getAttribute('contentType') === 'video');
  return video ? video.querySelectorAll('S').length : 0;
}

/// Segments the first variant of a live HLS multivariant playlist lists.
async function listedHlsSegments(url) {
  const main = await (await fetch(url, { cache: 'no-store' })).text();
  const variant = main.split('\n').map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
  if (!variant) return 0;
  const media = await (await fetch(new URL(variant, url), { cache: 'no-store' })).text();
  return media.split('\n').filter((l) => l.startsWith('#EXTINF')).length;
}

/// Waits until the live DASH MPD (or HLS playlist) lists `n` video
/// fragments: a player opened earlier starts at the very beginning, closer
/// to the live edge than its target delay, and stalls at the first late
/// fragment.
async function whenListed(url, live, n, listed) {
  if (!live) return;
  for (;;) {
    try {
      if ((await listed(url)) >= n) return;
    } catch { /* not written yet */ }
    $('message').textContent = 'Starting…';
    await new Promise((r) => setTimeout(r, 500));
  }
}

/// Waits until the output's live manifest can be played.
async function whenReady(output, live) {
  if (output.format === 'smooth') await whenPlayable(output.url, live);
  else if (output.format === 'dash') await whenListed(output.url, live, 3, listedDashFragments);
  else await whenListed(output.url, live, 2, listedHlsSegments);
  $('message').textContent = '';
}

async function stream() {
  return api('GET', `/streams/${encodeURIComponent(name)}`);
}

async function start() {
  if (!name) {
    $('message').textContent = 'Open this page with ?name=<stream>.';
    return;
  }
  const s = await stream();
  const wanted = params.get('format');
  const output = (wanted && s.outputs.find((o) => o.format === wanted))
    ?? s.outputs.find((o) => o.format === 'smooth')
    ?? s.outputs.find((o) => o.format === 'dash')
    ?? s.outputs.find((o) => o.format === 'hls');
  if (!output) {
    $('message').textContent = 'This stream has no output.';
    return;
  }
  if (output.format === 'hls') {
    // hls.js re-reads playlists, so live to on-demand needs no switch.
    view.url = output.url;
    $('title').textContent = s.name;
    $('format').textContent = '(hls)';
    await whenReady(output, s.state !== 'OnDemand');
    badge(s.state === 'OnDemand' ? 'ondemand' : 'live');
    // 1.5 fragments behind the playlist's end (hls.js's default is 3
    // target durations): measured glass to glass in
    // browser_e2e::glass_to_glass (one stall in 4 two-minute runs: see there).
    const hls = new Hls(s.fragmentDurationMs ? { liveSyncDuration: (1.5 * s.fragmentDurationMs) / 1000 } : {});
    hls.on(Hls.Events.ERROR, (_e, d) => { if (d.fatal) view.errors.push(`${d.type}: ${d.details}`); });
    hls.loadSource(output.url);
    hls.attachMedia($('video'));
    view.goLive = () => { if (Number.isFinite(hls.liveSyncPosition)) $('video').currentTime = hls.liveSyncPosition; };
    setInterval(async () => {
      const now = await stream().catch(() => null);
      if (now?.state === 'OnDemand') badge('ondemand');
    }, 2000);
    return;
  }
  view.url = output.url;
  // Back to the live edge after seeking into the DVR window. dash.js learns
  // of new fragments of a live Smooth stream only from the tfrf of those it
  // loads, so while it plays behind the edge its idea of the edge falls
  // behind too (its FragmentInfo polling stops at once when the last
  // fragment it knows is loaded, which it always is): reloading the
  // manifest is how it finds the edge. A DASH player re-reads the MPD.
  view.goLive = () => (output.format === 'smooth' ? player.attachSource(output.url) : player.seekToOriginalLive());
  // The player's clock comes from our own origin, the Date of a HEAD of
  // the manifest (the DASH MPD also says so itself; a Smooth manifest
  // cannot), never from dash.js's default public time server.
  player.updateSettings({ streaming: { utcSynchronization: { defaultTimingSource: { scheme: 'urn:mpeg:dash:utc:http-head:2014', value: output.url } } } });
  // liveDelayFragmentCount (above) is what dash.js applies to a Smooth
  // stream; for a DASH SegmentTimeline it knows no fragment duration and
  // falls back to the MPD's suggestedPresentationDelay. Either way it
  // cannot start further back than the MPD reaches: opened as the stream
  // goes Live, it started about 4 s behind the camera with 2 s fragments,
  // 0.3 s of buffer at the low points, and stalled within the first minute
  // (browser_e2e::glass_to_glass). So DASH starts once the MPD lists
  // three fragments (see whenReady), 2.5 fragments behind its end.
  if (output.format === 'dash' && s.fragmentDurationMs) {
    player.updateSettings({ streaming: { delay: { liveDelay: (2.5 * s.fragmentDurationMs) / 1000 } } });
  }
  $('title').textContent = s.name;
  $('format').textContent = `(${output.format})`;
  if (s.state !== 'Live' && s.state !== 'OnDemand' && s.state !== 'Stopping') {
    badge('waiting');
    $('message').textContent = `The stream is ${s.state}; waiting for it to go live…`;
  } else {
    const live = s.state !== 'OnDemand';
    badge('starting');
    await whenReady(output, live);
    badge(live ? 'live' : 'ondemand');
    player.initialize($('video'), output.url, true);
  }
  setInterval(async () => {
    let now;
    try { now = await stream(); } catch { return; }
    if (view.mode === 'waiting' && (now.state === 'Live' || now.state === 'OnDemand')) {
      view.mode = 'starting';
      await whenReady(output, now.state === 'Live');
      badge(now.state === 'OnDemand' ? 'ondemand' : 'live');
      player.initialize($('video'), output.url, true);
    } else if (view.mode === 'live' && now.state === 'OnDemand') {
      // The same URL now holds the whole recording: reload it in place.
      const position = $('video').currentTime;
      badge('ondemand');
      view.switched = true;
      player.attachSource(output.url, position);
    }
  }, 2000);
}

// A live player that stops advancing (a fragment it asked for too early
// and gave up on) is reloaded at the live edge: dash.js never re-reads a
// live Smooth manifest, so reloading is how it learns the current state.
let lastPosition = -1;
let stuckFor = 0;
setInterval(() => {
  const v = $('video');
  if (view.mode !== 'live' || v.paused || !view.url) { stuckFor = 0; return; }
  stuckFor = v.currentTime === lastPosition ? stuckFor + 1 : 0;
  lastPosition = v.currentTime;
  if (stuckFor >= 4) {
    stuckFor = 0;
    view.recoveries += 1;
    player.attachSource(view.url);
  }
}, 1000);

$('golive').addEventListener('click', () => view.goLive?.());

start().catch((e) => { $('message').textContent = e.message; });
