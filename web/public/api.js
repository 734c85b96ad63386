// The stream API and WHIP, from the browser. Same origin as the page by
// default; an API key (if the server requires one) comes from ?apiKey= and
// is remembered for the session.
const params = new URLSearchParams(location.search);
if (params.get('apiKey')) sessionStorage.setItem('apiKey', params.get('apiKey'));

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code;
  }
}

export async function api(method, path, body) {
  const headers = {};
  const key = sessionStorage.getItem('apiKey');
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

/// Publishes a MediaStream over WHIP (RFC 9725). Returns { pc, session }.
// Simulcast layers: a quarter, half and the full picture, one RTP stream
// each (`rid`), their bitrate caps from the full picture's size (about
// 0.09 bit per pixel at 30 fps: 2.5 Mbit/s at 1280x720).
export function simulcastEncodings(width, height) {
  const full = Math.round(Math.min(8e6, Math.max(3e5, width * height * 30 * 0.09)));
  // As many layers as libwebrtc sends for the picture (its simulcast
  // format table: three from 960x540, two from 480x270, else one, which is
  // no simulcast): an offer that announces a layer the browser will not
  // send makes the ingest node wait for it before recording.
  const layers = Math.min(width, height) >= 540 ? 3 : Math.min(width, height) >= 270 ? 2 : 1;
  const all = [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: Math.round(full * 0.12) },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: Math.round(full * 0.35) },
    { rid: 'f', maxBitrate: full },
  ];
  return layers > 1 ? all.slice(3 - layers) : null;
}

// Whether this browser can send H.264 simulcast (the node takes H.264).
export function canSimulcast() {
  return Boolean(globalThis.RTCRtpSender?.getCapabilities?.('video')?.codecs?.some((c) => c.mimeType.toLowerCase() === 'video/h264'));
}

export async function whipPublish(url, token, stream, onState, { simulcast = false } = {}) {
  const pc = new RTCPeerConnection();
  pc.onconnectionstatechange = () => onState?.(pc.connectionState);
  for (const track of stream.getTracks()) {
    const init = { direction: 'sendonly', streams: [stream] };
    if (track.kind === 'video' && simulcast && canSimulcast()) {
      const { width = 1280, height = 720 } = track.getSettings();
      const encodings = simulcastEncodings(width, height);
      if (encodings) init.sendEncodings = encodings;
    }
    const t = pc.addTransceiver(track, init);
    if (track.kind === 'video' && RTCRtpSender.getCapabilities && t.setCodecPreferences) {
      // The node takes H.264: offer it first.
      const codecs = RTCRtpSender.getCapabilities('video').codecs;
      const h264 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/h264');
      const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== 'video/h264');
      if (h264.length) t.setCodecPreferences([...h264, ...rest]);
    }
  }
  // A recording keeps its resolution: under congestion lower the frame rate
  // instead (a resolution change mid-stream would need a new quality level).
  for (const sender of pc.getSenders()) {
    if (sender.track?.kind !== 'video') continue;
    const p = sender.getParameters();
    p.degradationPreference = 'maintain-resolution';
    await sender.setParameters(p).catch(() => {});
  }
  await pc.setLocalDescription(await pc.createOffer());
  // No trickle ICE: wait for the candidates to be in the offer.
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const done = () => pc.iceGatheringState === 'complete' && resolve();
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, 3000);
  });
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  const text = await res.text();
  if (res.status !== 201) {
    pc.close();
    let problem = null;
    try { problem = JSON.parse(text); } catch { /* not JSON */ }
    throw new ApiError(res.status, problem ?? { detail: text });
  }
  const session = new URL(res.headers.get('location'), url).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  return { pc, session };
}

export async function whipEnd(session, token) {
  await fetch(session, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).catch(() => {});
}
