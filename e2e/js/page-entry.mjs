// The browser page's script (bundled by esbuild into the page the test
// serves): exposes runHerd, with the page's own fetch, so that every request
// is a real cross-origin fetch with CORS enforced by the browser.
import { runHerd } from "./herdclients.mjs";

window.runHerd = (cfg) =>
  runHerd(cfg, {
    fetchImpl: window.fetch.bind(window),
    emit: (ev) => window.mxgateEmit(ev),
    waitGo: () => window.mxgateWaitGo(),
  });
window.herdReady = true;
