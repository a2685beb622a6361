// browser-herd.mjs CONFIG.json — runs the js-sdk herd (herdclients.mjs,
// bundled into the page at cfg.pageUrl) in headless Chromium, driven by
// playwright-core. The page is served from another origin than mxgate, so
// the browser enforces CORS on every answer, as it does for Element Web.
// Same stdio protocol as node-herd.mjs (driver.mjs); the result adds what the browser
// itself saw: answers blocked by CORS, failed requests, console errors and
// 5xx answers.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { connectDriver } from "./driver.mjs";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const driver = connectDriver();

// Chromium's other files (crash reports, caches) stay in the profile too,
// not in the user's home.
const home = `${cfg.profile}/home`;
const context = await chromium.launchPersistentContext(`${cfg.profile}/data`, {
  executablePath: cfg.chromium,
  headless: true,
  env: { ...process.env, HOME: home, XDG_CONFIG_HOME: `${home}/.config`, XDG_CACHE_HOME: `${home}/.cache` },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-crash-reporter",
    // A browser opens at most 6 connections to one host, and every js-sdk
    // client keeps a /sync long-poll open: 100 clients in one page would
    // queue behind 6 sockets, which 100 users in 100 browsers never do.
    // Each client gets its own host name for mxgate, all resolving to it.
    "--host-resolver-rules=MAP *.mxgate.test 127.0.0.1",
  ],
});
const seen = { corsBlocked: 0, failedRequests: [], consoleErrors: 0, browser5xx: 0 };
let result;
try {
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    seen.consoleErrors++;
    if (/CORS|Access-Control/i.test(msg.text())) {
      seen.corsBlocked++;
      if (seen.corsBlocked <= 3) process.stderr.write("CORS: " + msg.text() + "\n");
    }
  });
  page.on("pageerror", (err) => process.stderr.write("page error: " + err + "\n"));
  page.on("requestfailed", (req) => {
    const why = req.failure() ? req.failure().errorText : "";
    // Aborts are the clients' own (stopClient, a long-poll they gave up).
    if (why !== "net::ERR_ABORTED") seen.failedRequests.push(`${req.method()} ${req.url()}: ${why}`);
  });
  page.on("response", (resp) => {
    if (resp.status() >= 500) seen.browser5xx++;
  });
  await page.exposeFunction("mxgateEmit", (ev) => driver.emit(ev));
  await page.exposeFunction("mxgateWaitGo", () => driver.waitGo());
  await page.goto(cfg.pageUrl);
  await page.waitForFunction(() => window.herdReady === true, null, { timeout: 30_000 });
  result = await page.evaluate((c) => window.runHerd(c), cfg);
} catch (e) {
  result = { error: String(e) };
} finally {
  await context.close();
}
await driver.emit({ event: "result", ...result, ...seen });
driver.close();
process.exit(0);
