// driver.mjs — the stdio protocol between a herd script (node-herd.mjs,
// browser-herd.mjs) and the Go test that drives it: one JSON object per
// line on stdout ({"event":"synced"}, {"event":"sent"}, then
// {"event":"result",...}); after "synced" and after "sent" the script
// waits for one "go" line on stdin, written once the test has done what
// belongs between (starting a brownout, ending it).
import { createInterface } from "node:readline";

export function connectDriver() {
  const lines = createInterface({ input: process.stdin });
  let unread = 0; // "go" lines that came before anyone waited
  const waiting = []; // resolvers of waitGo calls, oldest first
  lines.on("line", () => {
    const w = waiting.shift();
    if (w) w();
    else unread++;
  });
  return {
    // emit writes one event line; the promise resolves once it has been
    // handed to the pipe in full (a result can be larger than the pipe's
    // buffer, and exiting before that would cut it short).
    emit: (ev) => new Promise((resolve) => process.stdout.write(JSON.stringify(ev) + "\n", resolve)),
    // waitGo resolves with the next "go" line.
    waitGo: () =>
      new Promise((resolve) => {
        if (unread > 0) {
          unread--;
          resolve();
        } else {
          waiting.push(resolve);
        }
      }),
    close: () => lines.close(),
  };
}
