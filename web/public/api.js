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
export async function whipPublish(url, token, stream, onState) {
  const pc = new RTCPeerConnection();
  pc.onconnectionstatechange = () => onState?.(pc.connectionState);
  for (const track of stream.getTracks()) {
    const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
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
