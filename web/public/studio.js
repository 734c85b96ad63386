import { api, ApiError, canSimulcast, whipPublish, whipEnd } from './api.js';

const $ = (id) => document.getElementById(id);
const state = { name: null, token: null, whip: null, media: null, pc: null, session: null, sent: {} };
window.studio = state; // for the browser tests

function message(text) { $('message').textContent = text ?? ''; }

function explain(e) {
  if (e instanceof ApiError) {
    if (e.status === 401) return `The ingest token was refused: ${e.message}`;
    if (e.status === 409) return `Conflict: ${e.message}`;
    return e.message;
  }
  if (e?.name === 'NotAllowedError') return 'Camera or microphone permission was denied. Allow access in the browser and try again.';
  if (e?.name === 'NotFoundError' || e?.name === 'OverconstrainedError') return 'No camera or microphone was found (or none supports the chosen resolution).';
  return e?.message ?? String(e);
}

async function refreshStreams() {
  try {
    const { streams } = await api('GET', '/streams?limit=100');
    $('streams').replaceChildren(...streams.map((s) => {
      const li = document.createElement('li');
      li.innerHTML = `<code></code> <span class="badge"></span> <a>watch</a>`;
      li.querySelector('code').textContent = s.name;
      li.querySelector('.badge').textContent = s.state;
      li.querySelector('a').href = `player.html?name=${encodeURIComponent(s.name)}`;
      return li;
    }));
  } catch (e) { message(explain(e)); }
}

async function devices() {
  const list = await navigator.mediaDevices.enumerateDevices();
  for (const [kind, select] of [['videoinput', $('camera')], ['audioinput', $('microphone')]]) {
    select.replaceChildren(...list.filter((d) => d.kind === kind).map((d, i) => {
      const o = document.createElement('option');
      o.value = d.deviceId;
      o.textContent = d.label || `${kind} ${i + 1}`;
      return o;
    }));
  }
}

async function openCamera() {
  state.media?.getTracks().forEach((t) => t.stop());
  const [width, height] = $('resolution').value.split('x').map(Number);
  state.media = await navigator.mediaDevices.getUserMedia({
    video: { deviceId: $('camera').value || undefined, width: { ideal: width }, height: { ideal: height } },
    audio: { deviceId: $('microphone').value || undefined },
  });
  $('preview').srcObject = state.media;
  await devices();
}

$('create').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  message();
  const name = $('name').value.trim();
  try {
    try {
      await api('PUT', `/streams/${name}`, { outputs: [{ name: 'smooth', format: 'smooth' }, { name: 'dash', format: 'dash' }, { name: 'hls', format: 'hls' }] });
    } catch (e) {
      if (!(e instanceof ApiError && e.code === 'stream-exists')) throw e;
    }
    const started = await api('POST', `/streams/${name}/start-ingest`);
    state.name = name;
    $('whip-url').value = started.ingest.url;
    $('whip-token').value = started.ingest.token;
    $('publish').disabled = false;
    $('state').textContent = started.state;
    refreshStreams();
  } catch (e) { message(explain(e)); }
});

$('publish').addEventListener('click', async () => {
  message();
  try {
    if (!state.media) await openCamera();
    state.token = $('whip-token').value;
    state.whip = $('whip-url').value;
    const { pc, session } = await whipPublish(state.whip, state.token, state.media, (s) => {
      $('connection').textContent = s;
      if (s === 'failed') message('The connection failed: the ingest node could not be reached (ICE failed).');
    }, { simulcast: $('simulcast').checked });
    state.pc = pc;
    state.session = session;
    $('publish').disabled = true;
    $('stop').disabled = false;
  } catch (e) { message(explain(e)); }
});

$('stop').addEventListener('click', async () => {
  message();
  try {
    if (state.name) await api('POST', `/streams/${state.name}/stop-ingest`);
  } catch (e) { message(explain(e)); }
  if (state.session) await whipEnd(state.session, state.token);
  state.pc?.close();
  state.pc = null;
  state.session = null;
  state.sent = {};
  $('connection').textContent = 'closed';
  $('stop').disabled = true;
});

// A WHIP URL and token pasted by hand (any WHIP server) can be published too.
for (const id of ['whip-url', 'whip-token']) {
  $(id).addEventListener('input', () => {
    $('publish').disabled = !($('whip-url').value && $('whip-token').value) || Boolean(state.pc);
  });
}

for (const id of ['camera', 'microphone', 'resolution']) {
  $(id).addEventListener('change', () => openCamera().catch((e) => message(explain(e))));
}

// Sent bitrate, frame rate and resolution, once a second: per layer when
// simulcasting (largest first).
setInterval(async () => {
  if (!state.pc) return;
  const report = await state.pc.getStats();
  const layers = [];
  report.forEach((s) => {
    if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
    const key = s.rid ?? s.ssrc;
    const last = state.sent[key];
    const kbps = last ? ((s.bytesSent - last.bytes) * 8) / (s.timestamp - last.at) : 0;
    state.sent[key] = { bytes: s.bytesSent, at: s.timestamp };
    layers.push({ rid: s.rid, kbps, fps: s.framesPerSecond ?? 0, width: s.frameWidth ?? 0, height: s.frameHeight ?? 0 });
  });
  layers.sort((a, b) => b.width * b.height - a.width * a.height);
  $('stats').textContent = layers
    .map((l) => `${l.rid ? `${l.rid}: ` : ''}${Math.round(l.kbps)} kb/s · ${l.fps} fps · ${l.width ? `${l.width}×${l.height}` : 'paused'}`)
    .join(' | ');
}, 1000);

// The stream's state as the API reports it.
setInterval(async () => {
  if (!state.name) return;
  try {
    const s = await api('GET', `/streams/${state.name}`);
    $('state').textContent = s.state;
    $('playback').innerHTML = s.state === 'Live' || s.state === 'OnDemand' ? `<a href="player.html?name=${encodeURIComponent(s.name)}">watch</a>` : '';
  } catch (e) { message(explain(e)); }
}, 1000);

// Simulcast is on wherever the browser sends H.264 simulcast: each layer
// becomes a quality level of the recording (an ABR ladder for viewers).
if (!canSimulcast()) {
  $('simulcast').checked = false;
  $('simulcast').disabled = true;
  $('simulcast').parentElement.title = 'This browser cannot send H.264 simulcast';
}
refreshStreams();
setInterval(refreshStreams, 5000);
openCamera().catch((e) => message(explain(e)));
