// digit-denoise serve: the page's behaviour. No framework, no network beyond this server.
"use strict";
const $ = (id) => document.getElementById(id);
let recorded = null; // a WAV Blob made from the microphone
let voiceRecorded = null; // a WAV Blob of the user's voice sample
let profile = null; // the voice profile (JSON) the server made from it

async function json(url, options) {
  const r = await fetch(url, options);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function say(el, text, bad) { el.textContent = text; el.className = bad ? "error" : ""; }

async function loadLists() {
  const models = await json("/api/models");
  const sel = $("model");
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.name; o.textContent = m.name + (m.default ? " (default)" : "") + (m.personalised ? " (personalised)" : "");
    o.dataset.personalised = m.personalised ? "1" : "";
    o.dataset.info = `${m.summary}; ${m.sample_rate} Hz` + (m.trained_on ? `; trained on ${m.trained_on}` : "");
    sel.appendChild(o);
  }
  const showInfo = () => { $("model-info").textContent = sel.selectedOptions[0]?.dataset.info || ""; };
  sel.addEventListener("change", showInfo); showInfo();
  for (const s of await json("/api/samples")) {
    const o = document.createElement("option"); o.value = o.textContent = s; $("sample").appendChild(o);
  }
}

function show(prefix, res) {
  $(prefix.audioBefore).src = res.noisy_wav; $(prefix.audioAfter).src = res.denoised_wav;
  $(prefix.specBefore).src = res.noisy_png; $(prefix.specAfter).src = res.denoised_png;
}

$("denoise-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("file").files[0];
  const blob = file || recorded;
  if (!blob) { say($("status"), "choose a file or record first", true); return; }
  const fd = new FormData();
  fd.append("file", blob, file ? file.name : "recording.wav");
  if (profile) {
    const sel = $("model");
    if (!sel.selectedOptions[0]?.dataset.personalised) {  // a voice needs a personalised model
      const p = [...sel.options].find((o) => o.dataset.personalised);
      if (!p) { say($("status"), "no personalised model on this server: forget the voice or add one", true); return; }
      sel.value = p.value; sel.dispatchEvent(new Event("change"));
    }
    fd.append("voice", new Blob([JSON.stringify(profile)], { type: "application/json" }), "me.voice");
  }
  fd.append("model", $("model").value); fd.append("atten_lim", $("atten").value);
  say($("status"), "denoising…"); $("go").disabled = true;
  try {
    const res = await json("/api/session", { method: "POST", body: fd });
    show({ audioBefore: "before-audio", audioAfter: "after-audio", specBefore: "before-spec", specAfter: "after-spec" }, res);
    const link = $("download");
    link.href = res.denoised_wav; link.download = (res.name || "audio").replace(/\.[^.]*$/, "") + "-denoised.wav";
    $("result").hidden = false;
    say($("status"), `done: ${res.seconds} s, ${res.channels} channel(s), ${res.sample_rate} Hz, model ${res.model}`);
  } catch (e) { say($("status"), e.message, true); }
  finally { $("go").disabled = false; }
});

$("play-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const fd = new FormData($("play-form")); fd.append("model", $("model").value); fd.append("atten_lim", $("atten").value);
  say($("play-status"), "mixing and denoising…");
  try {
    const res = await json("/api/playground", { method: "POST", body: fd });
    show({ audioBefore: "play-noisy", audioAfter: "play-clean", specBefore: "play-noisy-spec", specAfter: "play-clean-spec" }, res);
    const m = res.metrics, f = (v, d) => (v === null || v === undefined ? "—" : v.toFixed(d));
    $("metrics").tBodies[0].innerHTML =
      `<tr><th>noisy</th><td>${f(m.si_sdr_noisy, 2)}</td><td>${f(m.pesq_noisy, 2)}</td><td>${f(m.stoi_noisy, 3)}</td></tr>` +
      `<tr><th>denoised</th><td>${f(m.si_sdr, 2)}</td><td>${f(m.pesq, 2)}</td><td>${f(m.stoi, 3)}</td></tr>`;
    $("play-result").hidden = false; say($("play-status"), "done");
  } catch (e) { say($("play-status"), e.message, true); }
});

// Recording: raw samples through Web Audio, written as a 16-bit WAV (what every server-side reader takes).
function recorder(button, status, fileInput, done) {
  let rec = null;
  button.addEventListener("click", async () => {
    if (rec) { // stop
      rec.stream.getTracks().forEach((t) => t.stop()); rec.node.disconnect(); await rec.ctx.close();
      const blob = wav(rec.chunks, rec.ctx.sampleRate); rec = null;
      button.textContent = button.dataset.label; done(blob);
      say(status, `recorded ${(blob.size / 1024).toFixed(0)} kB`);
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const ctx = new AudioContext();
      const src = ctx.createMediaStreamSource(stream);
      const node = ctx.createScriptProcessor(4096, 1, 1);
      const chunks = [];
      node.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
      src.connect(node); node.connect(ctx.destination);
      rec = { stream, ctx, node, chunks };
      fileInput.value = ""; button.dataset.label = button.textContent; button.textContent = "■ Stop";
      say(status, "recording…");
    } catch (e) { say(status, "microphone unavailable: " + e.message, true); }
  });
}
recorder($("record"), $("record-status"), $("file"), (b) => { recorded = b; });
recorder($("voice-record"), $("voice-record-status"), $("voice-file"), (b) => { voiceRecorded = b; });

$("voice-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("voice-file").files[0];
  const blob = file || voiceRecorded;
  if (!blob) { say($("voice-status"), "choose a voice sample or record one first", true); return; }
  const fd = new FormData(); fd.append("file", blob, file ? file.name : "voice.wav");
  say($("voice-status"), "listening to the voice…"); $("voice-go").disabled = true;
  try {
    const res = await json("/api/voice", { method: "POST", body: fd });
    profile = res.profile; $("voice-clear").hidden = false;
    say($("voice-status"), `using this voice (${res.speech_seconds} s of speech)` +
        (res.warnings.length ? "; note: " + res.warnings.join("; ") : ""));
  } catch (e) { profile = null; say($("voice-status"), e.message, true); }
  finally { $("voice-go").disabled = false; }
});
$("voice-clear").addEventListener("click", () => {
  profile = null; $("voice-clear").hidden = true; say($("voice-status"), "no voice: blind denoising");
});

function wav(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data");
  v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) for (const s of c) { v.setInt16(o, Math.max(-1, Math.min(1, s)) * 32767, true); o += 2; }
  return new Blob([buf], { type: "audio/wav" });
}

loadLists().catch((e) => say($("status"), "could not load the model list: " + e.message, true));
