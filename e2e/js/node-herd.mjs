// node-herd.mjs CONFIG.json — runs the js-sdk herd (herdclients.mjs) in
// node, talking to the Go test over stdio (driver.mjs). js-sdk's error logs
// go to stderr.
import { readFileSync } from "node:fs";
import { connectDriver } from "./driver.mjs";
import { runHerd } from "./herdclients.mjs";

// js-sdk silences the console (herdclients.mjs), so whatever ends this
// process early says so on stderr itself, where the test shows it.
process.on("exit", (code) => {
  if (code !== 0) process.stderr.write(`node-herd.mjs: exiting with code ${code}\n`);
});
for (const ev of ["uncaughtException", "unhandledRejection"]) {
  process.on(ev, (err) => {
    process.stderr.write(`node-herd.mjs: ${ev}: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  });
}
// A page stays open while its clients run. Node instead exits once nothing
// but unreferenced timers is left (code 13, an unsettled top-level await,
// whose warning the silenced console swallows), which would end the herd
// in the middle of a retry sleep; this holds the loop open until the run
// returns. The run's own deadlines bound it.
const keepAlive = setInterval(() => {}, 1000);

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const driver = connectDriver();
const result = await runHerd(cfg, { fetchImpl: globalThis.fetch, emit: driver.emit, waitGo: driver.waitGo });
await driver.emit({ event: "result", ...result });
clearInterval(keepAlive);
driver.close();
// js-sdk leaves timers behind after stopClient; the run is over. Only now:
// exiting while the result is still being written would cut it short.
process.exit(0);
