// Server-Sent Events over fetch: EventSource cannot send an Authorization header, and tokens must
// not travel in URLs (they would land in access logs and history).
"use strict";
window.CS = window.CS || {};

CS.streamEvents = async function streamEvents(url, token, onEvent, signal) {
  const resp = await fetch(url, {
    headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
    cache: "no-store", signal,
  });
  if (!resp.ok) {
    const err = new Error("live feed: HTTP " + resp.status);
    err.status = resp.status;
    throw err;
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // heartbeat comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
};
