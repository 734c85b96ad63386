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
    // The live delay is set per stream (liveDelay below). Keep asking for
    // a fragment that is not there yet instead of giving up.
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

/// How far behind its live edge a live player starts, per format: the age
/// of the newest fragment when it is written (a fragment), plus the most a
/// player may take to learn of the next one, plus a margin for a late
/// keyframe, a slow fetch or a busy decoder: each player keeps about 1 s of
/// buffer at its lowest (measured in browser_e2e::glass_to_glass;
/// docs/api.md has the latencies). Closer, a player stalls whenever its
/// discovery is slowest.

function liveDelay(format, s) {
  const fragment = (s.fragmentDurationMs ?? 2000) / 1000;
  switch (format) {
    // dash.js learns of the next fragment from the tfrf of the one before,
    // at once, and asks again every 0.5 s (retryIntervals) until it is
    // written, but it buffers only liveDelay - 1.5 fragments of a live
    // Smooth stream (its MssParser sets the buffer target so) and plays
    // closer to what is written than the delay says: measured, its buffer
    // at its lowest is the delay less about 2.9 s and a third of a
    // fragment (2 s fragments, delay 4.5 s: 0.8-1.0 s; 1 s fragments,
    // delay 3.0 s: nothing, and the picture froze for moments; 3.5 s: 0.26 s).
    // Never less than 1.5 fragments and 1.5 s: below that dash.js's buffer
    // target is 1.5 s or less, zero or less for long fragments, and it
    // stops asking for video (4 s fragments and 0.5F + 3.5 would give -0.5 s).
    case 'smooth': return Math.max(0.5 * fragment + 3.5, 1.5 * fragment + 1.5);
    // The MPD is re-read every half fragment (minimumUpdatePeriod).
    case 'dash': return 1.5 * fragment + 1;
    // hls.js re-reads a playlist every target duration (a fragment) when
    // it changed, and every half when it had not: its next fragment can be
    // learned up to a fragment late.
    default: return 2 * fragment + 0.75;
  }
}

/// The video fragments a live manifest lists: how many, and which is the
/// newest (its start time, or its sequence number for HLS).
async function listedVideo(output) {
  const text = async (u) => (await fetch(u, { cache: 'no-store' })).text();
  if (output.format === 'hls') {
    const main = await text(output.url);
    const variant = main.split('\n').map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
    if (!variant) return { count: 0, newest: null };
    const media = (await text(new URL(variant, output.url))).split('\n');
    const count = media.filter((l) => l.startsWith('#EXTINF')).length;
    const first = Number((media.find((l) => l.startsWith('#EXT-X-MEDIA-SEQUENCE:')) ?? ':0').split(':')[1]);
    return { count, newest: first + count - 1 };
  }
  const xml = new DOMParser().parseFromString(await text(output.url), 'application/xml');
  // Smooth `c` and DASH `S` elements: t (optional after the first), d, r.
  const video = output.format === 'smooth'
    ? [...xml.querySelectorAll('StreamIndex')].find((x) => x.getAttribute('Type') === 'video')
    : [...xml.querySelectorAll('AdaptationSet')].find((x) => x.getAttribute('contentType') === 'video');
  let count = 0;
  let t = 0;
  let newest = null;
  for (const e of video ? video.querySelectorAll(output.format === 'smooth' ? 'c' : 'S') : []) {
    if (e.hasAttribute('t')) t = Number(e.getAttribute('t'));
    const d = Number(e.getAttribute('d'));
    for (let r = Number(e.getAttribute('r') ?? (output.format === 'smooth' ? 1 : 0)) + (output.format === 'smooth' ? 0 : 1); r > 0; r -= 1) {
      newest = t;
      t += d;
      count += 1;
    }
  }
  return { count, newest };
}

/// Waits until a live output can be played from `liveDelay` behind its
/// newest fragment, then for the next fragment to be written, and returns
/// right after: a player starts as a fragment has just been written, so it
/// is a whole fragment from the edge of what exists whenever it is opened.
/// (Opened earlier, a player starts closer to the edge than its delay, or
/// at the very beginning; opened at a random moment, it is up to a fragment
/// closer. dash.js also gives up on a manifest it cannot load, which is not
/// written until both tracks have a fragment.)
async function whenReady(output, s, live) {
  if (!live) return;
  const fragment = (s.fragmentDurationMs ?? 2000) / 1000;
  const delay = liveDelay(output.format, s);
  const needed = Math.ceil(delay / fragment) + 1;
  let seen;
  for (;;) {
    try {
      const { count, newest } = await listedVideo(output);
      if (count >= needed && seen !== undefined && newest !== seen) break;
      if (count >= needed) seen = newest;
    } catch { /* not written yet */ }
    $('message').textContent = 'Starting…';
    await new Promise((r) => setTimeout(r, 200));
  }
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
    await whenReady(output, s, s.state !== 'OnDemand');
    badge(s.state === 'OnDemand' ? 'ondemand' : 'live');
    // liveDelay behind the playlist's end (hls.js's default is 3 target
    // durations).
    const hls = new Hls({ liveSyncDuration: liveDelay('hls', s) });
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
  // The player's clock comes from our own media origin, to the
  // millisecond (`/time` at its root: the CDN's edge function, the local
  // runner), never from dash.js's default public time server. The DASH MPD
  // says so itself; a Smooth manifest cannot. Where the origin has no
  // /time, dash.js falls back to the manifest's Date header (to the second:
  // up to a second further from the edge than liveDelay says).
  player.updateSettings({ streaming: { utcSynchronization: { defaultTimingSource: { scheme: 'urn:mpeg:dash:utc:http-xsdate:2014', value: new URL('/time', output.url).href } } } });
  // dash.js starts a live stream liveDelay behind its live edge: for
  // Smooth the end of the manifest's timeline, for DASH the MPD's clock.
  // (Without it, dash.js applies liveDelayFragmentCount to a Smooth stream,
  // capped at half the listed timeline, and for a DASH SegmentTimeline
  // falls back to suggestedPresentationDelay: a delay that depended on when
  // the page was opened.)
  player.updateSettings({ streaming: { delay: { liveDelay: liveDelay(output.format, s) } } });
  $('title').textContent = s.name;
  $('format').textContent = `(${output.format})`;
  if (s.state !== 'Live' && s.state !== 'OnDemand' && s.state !== 'Stopping') {
    badge('waiting');
    $('message').textContent = `The stream is ${s.state}; waiting for it to go live…`;
  } else {
    const live = s.state !== 'OnDemand';
    badge('starting');
    await whenReady(output, s, live);
    badge(live ? 'live' : 'ondemand');
    player.initialize($('video'), output.url, true);
  }
  setInterval(async () => {
    let now;
    try { now = await stream(); } catch { return; }
    if (view.mode === 'waiting' && (now.state === 'Live' || now.state === 'OnDemand')) {
      view.mode = 'starting';
      await whenReady(output, now, now.state === 'Live');
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
