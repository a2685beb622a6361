// A herd of matrix-js-sdk clients, the same code in node (node-herd.mjs)
// and in Chromium (page-entry.mjs, bundled by esbuild). runHerd starts every
// client at once, waits until each has synced the test room with its state,
// tells the driver (emit "synced"), waits for it to say go (the driver starts
// a brownout in between), has each client send one message, tells the driver
// (emit "sent"), waits for go again (the driver ends the brownout), and waits
// until every client has seen every message: live, or with /messages after a
// limited /sync left a gap in its timeline. Every HTTP exchange goes through an
// instrumented fetch, so the result says what the clients met (statuses,
// network errors) and what they did after a 429 (how soon they retried).

// Quiet js-sdk's debug logging before it loads: loglevel binds the console
// methods when its loggers are created. Errors stay (a browser counts them).
const noop = () => {};
console.log = console.info = console.debug = console.warn = console.trace = noop;

const sdk = await import("matrix-js-sdk");

// endpointOf names a request the way mxgate's classes do, for the tables.
export function endpointOf(method, url) {
  const u = new URL(url);
  const p = u.pathname;
  if (p.endsWith("/versions")) return "versions";
  if (p.endsWith("/sync")) return u.searchParams.has("since") ? "sync" : "sync_initial";
  if (p.includes("/send/")) return "send";
  if (p.includes("/pushrules")) return "pushrules";
  if (p.includes("/filter")) return "filter";
  if (p.includes("/capabilities")) return "capabilities";
  if (p.endsWith("/messages")) return "messages";
  return method + " other";
}

// Recorder counts one client's exchanges and measures, per endpoint, the
// delay between a 429 and the client's next request to the same endpoint
// (its retry), next to the Retry-After it was given. It calls onGap for
// every incremental /sync whose timeline of roomId is "limited" (more new
// events than its limit, e.g. when it came back late under load): the
// events in between are not in it. That is read off the wire because
// js-sdk does not always say: when a limited timeline holds an event it
// already has (the client's own message), it appends what follows that
// event and drops what came before, with no TimelineReset.
class Recorder {
  constructor(stats, roomId) {
    this.stats = stats;
    this.roomId = roomId;
    this.onGap = () => {};
    this.pending429 = new Map(); // endpoint -> {at, retryAfterS}
  }
  wrap(fetchImpl) {
    return async (input, init) => {
      const url = input instanceof Request ? input.url : String(input); // js-sdk passes a URL
      const method = (init && init.method) || "GET";
      const ep = endpointOf(method, url);
      const now = performance.now();
      const p = this.pending429.get(ep);
      if (p) {
        this.pending429.delete(ep);
        this.stats.retries.push({ endpoint: ep, delayMs: Math.round(now - p.at), retryAfterS: p.retryAfterS });
      }
      let resp;
      try {
        resp = await fetchImpl(input, init);
      } catch (e) {
        if (e && e.name === "AbortError") throw e; // the client stopping or a timeout it chose
        this.stats.networkErrors.push({ endpoint: ep, error: String(e) });
        throw e;
      }
      const key = `${ep} ${resp.status}`;
      this.stats.statuses[key] = (this.stats.statuses[key] || 0) + 1;
      if (resp.status >= 500) this.stats.server5xx++;
      if (ep === "sync" && resp.ok) {
        resp
          .clone()
          .json()
          .then((body) => {
            const room = body && body.rooms && body.rooms.join && body.rooms.join[this.roomId];
            if (room && room.timeline && room.timeline.limited) this.onGap();
          })
          .catch(() => {}); // not JSON: js-sdk meets the same and says so
      }
      if (resp.status === 429) {
        const ra = resp.headers.get("Retry-After");
        let reason = "";
        try {
          reason = (await resp.clone().json()).error;
        } catch {
          // not JSON: reason stays empty
        }
        this.stats.rejected429.push({ endpoint: ep, retryAfterS: ra === null ? null : Number(ra), reason });
        this.pending429.set(ep, { at: performance.now(), retryAfterS: ra === null ? null : Number(ra) });
      }
      return resp;
    };
  }
}

// waitFor resolves when cond() holds, checking on every event of emitter
// and at least every 250 ms, or rejects after ms.
function waitFor(what, ms, cond) {
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      clearInterval(tick);
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    const tick = setInterval(() => {
      if (cond()) {
        clearTimeout(deadline);
        clearInterval(tick);
        resolve();
      }
    }, 250);
  });
}

// retryAfterMs is how long a 429 asks a client to wait (the Retry-After
// header or retry_after_ms), or null for any other error.
function retryAfterMs(e) {
  if (!(e instanceof sdk.MatrixError) || e.httpStatus !== 429) return null;
  try {
    const ms = e.getRetryAfterMs();
    if (ms !== null && ms >= 0) return ms;
  } catch {
    // an unreadable Retry-After: fall through to a default
  }
  return 5000;
}

// backfill reads the test room's history backwards (at most five pages)
// until client c holds all n tagged messages, as a client fills a gap.
async function backfill(c, cfg, n) {
  let from = null;
  for (let page = 0; page < 5 && c.bodies.size < n; page++) {
    const res = await c.client.createMessagesRequest(cfg.roomId, from, 100, sdk.Direction.Backward);
    c.backfillReads++;
    for (const ev of res.chunk || []) {
      const body = (ev.type === "m.room.message" && ev.content && ev.content.body) || "";
      if (body.startsWith(cfg.tag)) c.bodies.add(body);
    }
    if (!res.end || !res.chunk || res.chunk.length === 0) break;
    from = res.end;
  }
}

// runHerd runs the scenario. cfg: {baseUrls, users: [{userId, accessToken,
// deviceId}], roomId, members, tag, syncTimeoutMs, deliverTimeoutMs}. io:
// {fetchImpl, emit(event), waitGo() -> Promise}. Client i talks to
// baseUrls[i % baseUrls.length] (a browser opens at most 6 connections per
// host; see browser-herd.mjs).
export async function runHerd(cfg, io) {
  const stats = { statuses: {}, networkErrors: [], rejected429: [], retries: [], server5xx: 0 };
  const t0 = performance.now();
  const clients = cfg.users.map((u, i) => {
    const rec = new Recorder(stats, cfg.roomId);
    const client = sdk.createClient({
      baseUrl: cfg.baseUrls[i % cfg.baseUrls.length],
      userId: u.userId,
      accessToken: u.accessToken,
      deviceId: u.deviceId,
      fetchFn: rec.wrap(io.fetchImpl),
    });
    const c = {
      client,
      syncedAt: null,
      bodies: new Set(),
      live: 0,
      gaps: 0,
      backfilledGaps: 0,
      backfilling: null,
      backfillNotBefore: 0, // after a refused read: when its Retry-After ends
      backfillReads: 0,
    };
    client.on(sdk.ClientEvent.Sync, (state) => {
      if ((state === "PREPARED" || state === "SYNCING") && c.syncedAt === null) c.syncedAt = performance.now() - t0;
    });
    client.on(sdk.RoomEvent.Timeline, (ev, room) => {
      if (room && room.roomId === cfg.roomId && ev.getType() === "m.room.message") {
        const body = ev.getContent().body || "";
        if (body.startsWith(cfg.tag) && !c.bodies.has(body)) {
          c.bodies.add(body);
          c.live++;
        }
      }
    });
    // The events in a gap are never emitted: a client reads them with
    // /messages, as Element does when the user scrolls up.
    rec.onGap = () => c.gaps++;
    return c;
  });
  const result = {
    stats,
    syncMs: [],
    stateOK: 0,
    sent: 0,
    sendErrors: [],
    deliveredMin: 0,
    liveMin: 0,
    gapClients: 0,
    backfillErrors: [],
    backfillRefused: 0,
    error: null,
  };
  try {
    // Every client at once, as after a homeserver restart or a page reload.
    await Promise.all(clients.map((c) => c.client.startClient({ initialSyncLimit: 10 })));
    const roomReady = (c) => {
      const room = c.client.getRoom(cfg.roomId);
      return (
        c.syncedAt !== null &&
        room !== null &&
        room.currentState.getStateEvents("m.room.create", "") !== null &&
        room.getJoinedMemberCount() === cfg.members
      );
    };
    await waitFor("every client to sync the room and its state", cfg.syncTimeoutMs, () => clients.every(roomReady));
    result.stateOK = clients.filter(roomReady).length;
    result.syncMs = clients.map((c) => Math.round(c.syncedAt)).sort((a, b) => a - b);
    io.emit({ event: "synced", count: result.stateOK });
    await io.waitGo();

    // One message each, during whatever the driver started meanwhile.
    const sends = await Promise.allSettled(
      clients.map((c, i) => c.client.sendTextMessage(cfg.roomId, `${cfg.tag} ${i}`)),
    );
    sends.forEach((s, i) => {
      if (s.status === "fulfilled") result.sent++;
      else result.sendErrors.push({ client: i, error: String(s.reason) });
    });
    io.emit({ event: "sent", count: result.sent });
    await io.waitGo();

    // A gap is read as a user scrolling up reads it: a refused read is
    // tried again once its Retry-After has passed (a brownout that sheds
    // /messages refuses it on purpose); any other failure is an error.
    const n = clients.length;
    const caughtUp = (c) => {
      if (c.bodies.size === n) return true;
      if (c.gaps > c.backfilledGaps && c.backfilling === null && performance.now() >= c.backfillNotBefore) {
        const gaps = c.gaps;
        c.backfilling = backfill(c, cfg, n)
          .then(() => (c.backfilledGaps = gaps))
          .catch((e) => {
            const wait = retryAfterMs(e);
            if (wait === null) {
              result.backfillErrors.push(String(e));
              c.backfillNotBefore = performance.now() + 1000;
              return;
            }
            result.backfillRefused++;
            c.backfillNotBefore = performance.now() + wait;
          })
          .finally(() => (c.backfilling = null));
      }
      return false;
    };
    await waitFor("every client to see every message", cfg.deliverTimeoutMs, () =>
      clients.map(caughtUp).every(Boolean),
    );
  } catch (e) {
    result.error = String(e);
  } finally {
    result.deliveredMin = Math.min(...clients.map((c) => c.bodies.size));
    result.liveMin = Math.min(...clients.map((c) => c.live));
    result.gapClients = clients.filter((c) => c.gaps > 0).length;
    const worst = clients.reduce((w, c) => (c.bodies.size < w.bodies.size ? c : w), clients[0]);
    result.worst = { gaps: worst.gaps, backfilledGaps: worst.backfilledGaps, backfillReads: worst.backfillReads };
    result.stateOK = result.stateOK || clients.filter((c) => c.syncedAt !== null).length;
    clients.forEach((c) => c.client.stopClient());
  }
  result.elapsedMs = Math.round(performance.now() - t0);
  return result;
}
