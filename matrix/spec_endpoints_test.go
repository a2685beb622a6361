package matrix

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// specSample is one request to one endpoint, the class it must get and why.
type specSample struct {
	// spec is the endpoint's path template exactly as in
	// testdata/spec_endpoints.txt (the OpenAPI files of matrix-org/matrix-spec,
	// listed by matrix/internal/specendpoints), or "" for an endpoint outside
	// the spec: unstable MSCs, legacy prefixes, Synapse's own /_synapse.
	spec                string
	method, path, query string
	class               Class
	reason              string
}

// Path pieces and IDs as clients send them: percent-encoded sigils.
const (
	cs3    = "/_matrix/client/v3"
	cs1    = "/_matrix/client/v1"
	csR0   = "/_matrix/client/r0"
	csAPI1 = "/_matrix/client/api/v1"
	csU    = "/_matrix/client/unstable"
	csRoot = "/_matrix/client"
	md3    = "/_matrix/media/v3"
	md1    = "/_matrix/media/v1"
	fd1    = "/_matrix/federation/v1"
	fd2    = "/_matrix/federation/v2"
	ky2    = "/_matrix/key/v2"
	pol1   = "/_matrix/policy/v1"
	wk     = "/.well-known/matrix"
	synC   = "/_synapse/client"
	synA   = "/_synapse/admin"
	synM   = "/_synapse/mas"

	rid   = "%21room%3Aexample.org"
	alias = "%23alias%3Aexample.org"
	alice = "%40alice%3Aexample.org"
	evt   = "%24event"
)

// specSamples has one sample per endpoint and method of the spec (every line
// of testdata/spec_endpoints.txt, in its order), then the variants and the
// endpoints outside the spec that clients use today.
var specSamples = []specSample{
	{"/_matrix/client/v3/devices/{deviceId}", "DELETE", cs3 + "/devices/QWERTYUIOP", "", Keys, "deleting a device deletes its E2EE keys and changes the user's device list"},
	{"/_matrix/client/v3/directory/room/{roomAlias}", "DELETE", cs3 + "/directory/room/" + alias, "", Other, "alias management: a rare, cheap write"},
	{"/_matrix/client/v3/profile/{userId}/{keyName}", "DELETE", cs3 + "/profile/" + alice + "/displayname", "", Other, "profile write: fans out member events, but nobody waits on it"},
	{"/_matrix/client/v3/pushrules/global/{kind}/{ruleId}", "DELETE", cs3 + "/pushrules/global/override/com.example.rule", "", Other, "push rule write: a settings change, not needed to connect"},
	{"/_matrix/client/v3/room_keys/keys", "DELETE", cs3 + "/room_keys/keys", "version=1", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/room_keys/keys/{roomId}", "DELETE", cs3 + "/room_keys/keys/" + rid, "version=1", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}", "DELETE", cs3 + "/room_keys/keys/" + rid + "/session1", "version=1", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/room_keys/version/{version}", "DELETE", cs3 + "/room_keys/version/1", "", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}", "DELETE", cs3 + "/user/" + alice + "/rooms/" + rid + "/tags/m.favourite", "", Other, "room tags are room account data: persistent user state, not ephemeral"},
	{"/.well-known/matrix/client", "GET", wk + "/client", "", Discovery, "where the homeserver is: the first request of every client start"},
	{"/.well-known/matrix/policy_server", "GET", wk + "/policy_server", "", Discovery, "a policy server's static public key"},
	{"/.well-known/matrix/server", "GET", wk + "/server", "", Discovery, "delegation lookup other servers make before federating: static"},
	{"/.well-known/matrix/support", "GET", wk + "/support", "", Discovery, "static support contacts"},
	{"/_matrix/client/v1/admin/lock/{userId}", "GET", cs1 + "/admin/lock/" + alice, "", Admin, "spec admin API: the operator's tool, never shed by brownout"},
	{"/_matrix/client/v1/admin/suspend/{userId}", "GET", cs1 + "/admin/suspend/" + alice, "", Admin, "spec admin API: the operator's tool, never shed by brownout"},
	{"/_matrix/client/v1/auth_metadata", "GET", cs1 + "/auth_metadata", "", Discovery, "OAuth server metadata: static, needed before login and on reconnect; critical like auth, on its own budget"},
	{"/_matrix/client/v1/media/config", "GET", cs1 + "/media/config", "", Media, "authenticated media: the upload limits"},
	{"/_matrix/client/v1/media/download/{serverName}/{mediaId}", "GET", cs1 + "/media/download/example.org/AQwafuaFswefuhsfAFAgsw", "", Media, "authenticated media download"},
	{"/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}", "GET", cs1 + "/media/download/example.org/AQwafuaFswefuhsfAFAgsw/cat.png", "", Media, "authenticated media download with a file name"},
	{"/_matrix/client/v1/media/preview_url", "GET", cs1 + "/media/preview_url", "url=https%3A%2F%2Fexample.org%2F", Media, "URL preview: the homeserver fetches the page, media's budget"},
	{"/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}", "GET", cs1 + "/media/thumbnail/example.org/AQwafuaFswefuhsfAFAgsw", "width=96&height=96&method=crop", Media, "authenticated thumbnail"},
	{"/_matrix/client/v1/mutual_rooms", "GET", cs1 + "/mutual_rooms", "user_id=%40bob%3Aexample.org", Other, "rooms shared with a user: a profile view, not on a hot path"},
	{"/_matrix/client/v1/register/m.login.registration_token/validity", "GET", cs1 + "/register/m.login.registration_token/validity", "token=abcd", Auth, "a step of registration"},
	{"/_matrix/client/v1/room_summary/{roomIdOrAlias}", "GET", cs1 + "/room_summary/" + rid, "", Other, "room preview: one summary, maybe over federation"},
	{"/_matrix/client/v1/rooms/{roomId}/hierarchy", "GET", cs1 + "/rooms/" + rid + "/hierarchy", "limit=20", Search, "space hierarchy: walks many rooms, maybe over federation; expensive and deferrable"},
	{"/_matrix/client/v1/rooms/{roomId}/relations/{eventId}", "GET", cs1 + "/rooms/" + rid + "/relations/" + evt, "dir=b", History, "relations of one event: a timeline read"},
	{"/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}", "GET", cs1 + "/rooms/" + rid + "/relations/" + evt + "/m.thread", "", History, "a thread's events: a timeline read"},
	{"/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", "GET", cs1 + "/rooms/" + rid + "/relations/" + evt + "/m.annotation/m.reaction", "", History, "relations of one type: a timeline read"},
	{"/_matrix/client/v1/rooms/{roomId}/threads", "GET", cs1 + "/rooms/" + rid + "/threads", "include=all", History, "thread list: a timeline read"},
	{"/_matrix/client/v1/rooms/{roomId}/timestamp_to_event", "GET", cs1 + "/rooms/" + rid + "/timestamp_to_event", "ts=1700000000000&dir=f", History, "jump to date: one timeline lookup"},
	{"/_matrix/client/v3/account/3pid", "GET", cs3 + "/account/3pid", "", Auth, "account management: the user's 3PIDs"},
	{"/_matrix/client/v3/account/whoami", "GET", cs3 + "/account/whoami", "", Auth, "token check every client (and share_state) makes: critical"},
	{"/_matrix/client/v3/admin/whois/{userId}", "GET", cs3 + "/admin/whois/" + alice, "", Admin, "spec admin API: the operator's tool, never shed by brownout"},
	{"/_matrix/client/v3/capabilities", "GET", cs3 + "/capabilities", "", Discovery, "static server capabilities, fetched on every client start"},
	{"/_matrix/client/v3/devices", "GET", cs3 + "/devices", "", Keys, "the session manager's device list: devices hold the E2EE keys"},
	{"/_matrix/client/v3/devices/{deviceId}", "GET", cs3 + "/devices/QWERTYUIOP", "", Keys, "one device of the session manager"},
	{"/_matrix/client/v3/directory/list/room/{roomId}", "GET", cs3 + "/directory/list/room/" + rid, "", Other, "a room's directory visibility: cheap"},
	{"/_matrix/client/v3/directory/room/{roomAlias}", "GET", cs3 + "/directory/room/" + alias, "", Other, "alias resolution: one lookup or one federation query"},
	{"/_matrix/client/v3/events", "GET", cs3 + "/events", "from=s72594_4483_1934&timeout=30000", Sync, "legacy event stream: a long-poll idle up to 30 s; long-polls are never sync_initial"},
	{"/_matrix/client/v3/events", "GET", cs3 + "/events", "room_id=%21room%3Aexample.org&timeout=30000", Sync, "js-sdk's room preview peek: the same long-poll, never sync_initial"},
	{"/_matrix/client/v3/events/{eventId}", "GET", cs3 + "/events/" + evt, "", History, "one event by ID (legacy): a point read"},
	{"/_matrix/client/v3/initialSync", "GET", cs3 + "/initialSync", "limit=10", SyncInitial, "legacy initial sync: every room's state and timeline"},
	{"/_matrix/client/v3/joined_rooms", "GET", cs3 + "/joined_rooms", "", Other, "the user's room list: one cheap query"},
	{"/_matrix/client/v3/keys/changes", "GET", cs3 + "/keys/changes", "from=s1&to=s2", Keys, "device list changes for E2EE"},
	{"/_matrix/client/v3/login", "GET", cs3 + "/login", "", Discovery, "login flows: a static answer clients fetch before login; in discovery (critical, own budget) so a login storm's password hashing in auth cannot starve it"},
	{"/_matrix/client/v3/login/sso/redirect", "GET", cs3 + "/login/sso/redirect", "redirectUrl=https%3A%2F%2Fapp.example.org%2F", Auth, "SSO start: part of logging in"},
	{"/_matrix/client/v3/login/sso/redirect/{idpId}", "GET", cs3 + "/login/sso/redirect/oidc-github", "redirectUrl=https%3A%2F%2Fapp.example.org%2F", Auth, "SSO start at one identity provider: part of logging in"},
	{"/_matrix/client/v3/notifications", "GET", cs3 + "/notifications", "limit=20", Search, "notification panel: a scan over push actions, deferrable"},
	{"/_matrix/client/v3/presence/{userId}/status", "GET", cs3 + "/presence/" + alice + "/status", "", Ephemeral, "presence: worthless when late"},
	{"/_matrix/client/v3/profile/{userId}", "GET", cs3 + "/profile/" + alice, "", Other, "profile read: cheap"},
	{"/_matrix/client/v3/profile/{userId}/{keyName}", "GET", cs3 + "/profile/" + alice + "/displayname", "", Other, "profile field read: cheap"},
	{"/_matrix/client/v3/publicRooms", "GET", cs3 + "/publicRooms", "limit=20", Search, "room directory: a listing, maybe over federation"},
	{"/_matrix/client/v3/pushers", "GET", cs3 + "/pushers", "", Other, "push settings page: not needed to connect"},
	{"/_matrix/client/v3/pushrules/", "GET", cs3 + "/pushrules/", "", Discovery, "push rules: fetched on every client start, before the first /sync"},
	{"/_matrix/client/v3/pushrules/global/", "GET", cs3 + "/pushrules/global/", "", Discovery, "push rules, global scope: startup"},
	{"/_matrix/client/v3/pushrules/global/{kind}/{ruleId}", "GET", cs3 + "/pushrules/global/override/com.example.rule", "", Discovery, "one push rule read: cheap, startup-adjacent"},
	{"/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions", "GET", cs3 + "/pushrules/global/override/com.example.rule/actions", "", Discovery, "one push rule's actions: cheap read"},
	{"/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled", "GET", cs3 + "/pushrules/global/override/com.example.rule/enabled", "", Discovery, "one push rule's state: cheap read"},
	{"/_matrix/client/v3/register/available", "GET", cs3 + "/register/available", "username=alice", Auth, "a step of registration"},
	{"/_matrix/client/v3/room_keys/keys", "GET", cs3 + "/room_keys/keys", "version=1", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/room_keys/keys/{roomId}", "GET", cs3 + "/room_keys/keys/" + rid, "version=1", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}", "GET", cs3 + "/room_keys/keys/" + rid + "/session1", "version=1", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/room_keys/version", "GET", cs3 + "/room_keys/version", "", Keys, "key backup (room_keys): end-to-end encryption state: the current backup, read on start"},
	{"/_matrix/client/v3/room_keys/version/{version}", "GET", cs3 + "/room_keys/version/1", "", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/rooms/{roomId}/aliases", "GET", cs3 + "/rooms/" + rid + "/aliases", "", Other, "a room's local aliases: cheap"},
	{"/_matrix/client/v3/rooms/{roomId}/context/{eventId}", "GET", cs3 + "/rooms/" + rid + "/context/" + evt, "limit=10", History, "events around one event: a timeline read"},
	{"/_matrix/client/v3/rooms/{roomId}/event/{eventId}", "GET", cs3 + "/rooms/" + rid + "/event/" + evt, "", History, "one event: a point read"},
	{"/_matrix/client/v3/rooms/{roomId}/initialSync", "GET", cs3 + "/rooms/" + rid + "/initialSync", "", SyncInitial, "legacy room initial sync: the room's whole state and timeline"},
	{"/_matrix/client/v3/rooms/{roomId}/joined_members", "GET", cs3 + "/rooms/" + rid + "/joined_members", "", RoomState, "every joined member: a big room's member list is MBs"},
	{"/_matrix/client/v3/rooms/{roomId}/members", "GET", cs3 + "/rooms/" + rid + "/members", "at=s1&membership=join", RoomState, "the member list (lazy-loading clients fetch it on opening a room)"},
	{"/_matrix/client/v3/rooms/{roomId}/messages", "GET", cs3 + "/rooms/" + rid + "/messages", "dir=b&limit=50&from=t1", History, "timeline pagination"},
	{"/_matrix/client/v3/rooms/{roomId}/state", "GET", cs3 + "/rooms/" + rid + "/state", "", RoomState, "the whole state: MBs for a big room, the herd's request"},
	{"/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}", "GET", cs3 + "/rooms/" + rid + "/state/m.room.member/" + alice, "", History, "one state event: a point read, not room_state (it must not wait behind full-state resyncs)"},
	{"/_matrix/client/v3/sync", "GET", cs3 + "/sync", "filter=0&timeout=0", SyncInitial, "no since: a full initial sync, the thundering herd"},
	{"/_matrix/client/v3/thirdparty/location", "GET", cs3 + "/thirdparty/location", "alias=%23irc_%23matrix%3Aexample.org", Other, "bridge lookup: rare"},
	{"/_matrix/client/v3/thirdparty/location/{protocol}", "GET", cs3 + "/thirdparty/location/irc", "searchFields=x", Other, "bridge lookup: rare"},
	{"/_matrix/client/v3/thirdparty/protocol/{protocol}", "GET", cs3 + "/thirdparty/protocol/irc", "", Other, "bridge metadata: rare"},
	{"/_matrix/client/v3/thirdparty/protocols", "GET", cs3 + "/thirdparty/protocols", "", Other, "bridge list for the room directory: rare"},
	{"/_matrix/client/v3/thirdparty/user", "GET", cs3 + "/thirdparty/user", "userid=%40irc_bob%3Aexample.org", Other, "bridge lookup: rare"},
	{"/_matrix/client/v3/thirdparty/user/{protocol}", "GET", cs3 + "/thirdparty/user/irc", "nick=bob", Other, "bridge lookup: rare"},
	{"/_matrix/client/v3/user/{userId}/account_data/{type}", "GET", cs3 + "/user/" + alice + "/account_data/m.direct", "", Other, "account data (m.direct, secret storage, ignored users) is persistent user state, not ephemeral"},
	{"/_matrix/client/v3/user/{userId}/filter/{filterId}", "GET", cs3 + "/user/" + alice + "/filter/1", "", Discovery, "a client reads its stored filter before its first /sync"},
	{"/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}", "GET", cs3 + "/user/" + alice + "/rooms/" + rid + "/account_data/m.fully_read", "", Other, "room account data: persistent user state, not ephemeral"},
	{"/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags", "GET", cs3 + "/user/" + alice + "/rooms/" + rid + "/tags", "", Other, "room tags: room account data, persistent"},
	{"/_matrix/client/v3/voip/turnServer", "GET", cs3 + "/voip/turnServer", "", Other, "TURN credentials: fetched at start and before calls, cheap"},
	{"/_matrix/client/versions", "GET", csRoot + "/versions", "", Discovery, "the first call of every client start and js-sdk's probe after every /sync error: must never be refused"},
	{"/_matrix/federation/v1/backfill/{roomId}", "GET", fd1 + "/backfill/" + rid, "v=%24event&limit=50", Federation, "backfill: server-to-server"},
	{"/_matrix/federation/v1/event/{eventId}", "GET", fd1 + "/event/" + evt, "", Federation, "one event for another server"},
	{"/_matrix/federation/v1/event_auth/{roomId}/{eventId}", "GET", fd1 + "/event_auth/" + rid + "/" + evt, "", Federation, "auth chain for another server"},
	{"/_matrix/federation/v1/hierarchy/{roomId}", "GET", fd1 + "/hierarchy/" + rid, "", Federation, "space hierarchy for another server"},
	{"/_matrix/federation/v1/make_join/{roomId}/{userId}", "GET", fd1 + "/make_join/" + rid + "/" + alice, "ver=10&ver=11", Federation, "join handshake, first half"},
	{"/_matrix/federation/v1/make_knock/{roomId}/{userId}", "GET", fd1 + "/make_knock/" + rid + "/" + alice, "", Federation, "knock handshake, first half"},
	{"/_matrix/federation/v1/make_leave/{roomId}/{userId}", "GET", fd1 + "/make_leave/" + rid + "/" + alice, "", Federation, "leave handshake, first half"},
	{"/_matrix/federation/v1/media/download/{mediaId}", "GET", fd1 + "/media/download/AQwafuaFswefuhsfAFAgsw", "", Media, "media another server fetches: media's cost, not federation's"},
	{"/_matrix/federation/v1/media/thumbnail/{mediaId}", "GET", fd1 + "/media/thumbnail/AQwafuaFswefuhsfAFAgsw", "width=96&height=96", Media, "thumbnail another server fetches: media's cost"},
	{"/_matrix/federation/v1/openid/userinfo", "GET", fd1 + "/openid/userinfo", "access_token=openid", Federation, "OpenID token check by another server"},
	{"/_matrix/federation/v1/publicRooms", "GET", fd1 + "/publicRooms", "", Federation, "room directory for another server"},
	{"/_matrix/federation/v1/query/directory", "GET", fd1 + "/query/directory", "room_alias=%23alias%3Aexample.org", Federation, "alias query from another server"},
	{"/_matrix/federation/v1/query/profile", "GET", fd1 + "/query/profile", "user_id=%40alice%3Aexample.org", Federation, "profile query from another server"},
	{"/_matrix/federation/v1/query/{queryType}", "GET", fd1 + "/query/m.example", "", Federation, "custom query from another server"},
	{"/_matrix/federation/v1/state/{roomId}", "GET", fd1 + "/state/" + rid, "event_id=%24event", Federation, "room state for another server"},
	{"/_matrix/federation/v1/state_ids/{roomId}", "GET", fd1 + "/state_ids/" + rid, "event_id=%24event", Federation, "room state IDs for another server"},
	{"/_matrix/federation/v1/timestamp_to_event/{roomId}", "GET", fd1 + "/timestamp_to_event/" + rid, "ts=1700000000000&dir=b", Federation, "jump to date for another server"},
	{"/_matrix/federation/v1/user/devices/{userId}", "GET", fd1 + "/user/devices/" + alice, "", Federation, "device list for another server"},
	{"/_matrix/federation/v1/version", "GET", fd1 + "/version", "", Federation, "server version: federation tester and peers"},
	{"/_matrix/key/v2/query/{serverName}", "GET", ky2 + "/query/example.org", "", Federation, "notary key query: server-to-server"},
	{"/_matrix/key/v2/server", "GET", ky2 + "/server", "", Federation, "this server's signing keys: server-to-server"},
	{"/_matrix/media/v3/config", "GET", md3 + "/config", "", Media, "legacy media: the upload limits"},
	{"/_matrix/media/v3/download/{serverName}/{mediaId}", "GET", md3 + "/download/example.org/AQwafuaFswefuhsfAFAgsw", "", Media, "legacy media download"},
	{"/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}", "GET", md3 + "/download/example.org/AQwafuaFswefuhsfAFAgsw/cat.png", "", Media, "legacy media download with a file name"},
	{"/_matrix/media/v3/preview_url", "GET", md3 + "/preview_url", "url=https%3A%2F%2Fexample.org%2F", Media, "legacy URL preview"},
	{"/_matrix/media/v3/thumbnail/{serverName}/{mediaId}", "GET", md3 + "/thumbnail/example.org/AQwafuaFswefuhsfAFAgsw", "width=32&height=32", Media, "legacy thumbnail"},
	{"/_matrix/client/v1/appservice/{appserviceId}/ping", "POST", cs1 + "/appservice/irc-bridge/ping", "", Other, "appservice health check: rare"},
	{"/_matrix/client/v1/login/get_token", "POST", cs1 + "/login/get_token", "", Auth, "a login token for another device: logging in"},
	{"/_matrix/client/v3/account/3pid", "POST", cs3 + "/account/3pid", "", Auth, "account management: add a 3PID (deprecated form): auth"},
	{"/_matrix/client/v3/account/3pid/add", "POST", cs3 + "/account/3pid/add", "", Auth, "account management: add a 3PID: auth"},
	{"/_matrix/client/v3/account/3pid/bind", "POST", cs3 + "/account/3pid/bind", "", Auth, "account management: bind a 3PID: auth"},
	{"/_matrix/client/v3/account/3pid/delete", "POST", cs3 + "/account/3pid/delete", "", Auth, "account management: remove a 3PID: auth"},
	{"/_matrix/client/v3/account/3pid/email/requestToken", "POST", cs3 + "/account/3pid/email/requestToken", "", Auth, "3PID verification email: auth"},
	{"/_matrix/client/v3/account/3pid/msisdn/requestToken", "POST", cs3 + "/account/3pid/msisdn/requestToken", "", Auth, "3PID verification SMS: auth"},
	{"/_matrix/client/v3/account/3pid/unbind", "POST", cs3 + "/account/3pid/unbind", "", Auth, "account management: unbind a 3PID: auth"},
	{"/_matrix/client/v3/account/deactivate", "POST", cs3 + "/account/deactivate", "", Auth, "account deactivation: auth"},
	{"/_matrix/client/v3/account/password", "POST", cs3 + "/account/password", "", Auth, "password change: auth"},
	{"/_matrix/client/v3/account/password/email/requestToken", "POST", cs3 + "/account/password/email/requestToken", "", Auth, "password reset email: auth"},
	{"/_matrix/client/v3/account/password/msisdn/requestToken", "POST", cs3 + "/account/password/msisdn/requestToken", "", Auth, "password reset SMS: auth"},
	{"/_matrix/client/v3/createRoom", "POST", cs3 + "/createRoom", "", Send, "room creation: the user waits on it; critical"},
	{"/_matrix/client/v3/delete_devices", "POST", cs3 + "/delete_devices", "", Keys, "deleting devices deletes their E2EE keys"},
	{"/_matrix/client/v3/join/{roomIdOrAlias}", "POST", cs3 + "/join/" + alias, "server_name=example.org", Send, "join by ID or alias: the user waits on it"},
	{"/_matrix/client/v3/keys/claim", "POST", cs3 + "/keys/claim", "", Keys, "one-time key claim: E2EE"},
	{"/_matrix/client/v3/keys/device_signing/upload", "POST", cs3 + "/keys/device_signing/upload", "", Keys, "cross-signing keys: E2EE"},
	{"/_matrix/client/v3/keys/query", "POST", cs3 + "/keys/query", "", Keys, "device key query: E2EE"},
	{"/_matrix/client/v3/keys/signatures/upload", "POST", cs3 + "/keys/signatures/upload", "", Keys, "cross-signing signatures: E2EE"},
	{"/_matrix/client/v3/keys/upload", "POST", cs3 + "/keys/upload", "", Keys, "device and one-time keys: E2EE"},
	{"/_matrix/client/v3/knock/{roomIdOrAlias}", "POST", cs3 + "/knock/" + rid, "via=example.org", Send, "knock: a membership change"},
	{"/_matrix/client/v3/login", "POST", cs3 + "/login", "", Auth, "logging in: password hashing, critical"},
	{"/_matrix/client/v3/logout", "POST", cs3 + "/logout", "", Auth, "logging out"},
	{"/_matrix/client/v3/logout/all", "POST", cs3 + "/logout/all", "", Auth, "logging out everywhere"},
	{"/_matrix/client/v3/publicRooms", "POST", cs3 + "/publicRooms", "server=example.org", Search, "room directory search, maybe over federation"},
	{"/_matrix/client/v3/pushers/set", "POST", cs3 + "/pushers/set", "", Other, "pusher registration: at start, but retried, not blocking"},
	{"/_matrix/client/v3/refresh", "POST", cs3 + "/refresh", "", Auth, "token refresh: a client without it is logged out"},
	{"/_matrix/client/v3/register", "POST", cs3 + "/register", "kind=user", Auth, "registration"},
	{"/_matrix/client/v3/register/email/requestToken", "POST", cs3 + "/register/email/requestToken", "", Auth, "registration email verification"},
	{"/_matrix/client/v3/register/msisdn/requestToken", "POST", cs3 + "/register/msisdn/requestToken", "", Auth, "registration SMS verification"},
	{"/_matrix/client/v3/room_keys/version", "POST", cs3 + "/room_keys/version", "", Keys, "key backup (room_keys): end-to-end encryption state: a new backup"},
	{"/_matrix/client/v3/rooms/{roomId}/ban", "POST", cs3 + "/rooms/" + rid + "/ban", "", Send, "membership change (ban): the user waits on it"},
	{"/_matrix/client/v3/rooms/{roomId}/forget", "POST", cs3 + "/rooms/" + rid + "/forget", "", Send, "membership change (forget): the user waits on it"},
	{"/_matrix/client/v3/rooms/{roomId}/invite", "POST", cs3 + "/rooms/" + rid + "/invite", "", Send, "invite a user: a membership change"},
	{"/_matrix/client/v3/rooms/{roomId}/invite", "POST", cs3 + "/rooms/" + rid + "/invite", "", Send, "invite by 3PID: a membership change"},
	{"/_matrix/client/v3/rooms/{roomId}/join", "POST", cs3 + "/rooms/" + rid + "/join", "", Send, "membership change (join): the user waits on it"},
	{"/_matrix/client/v3/rooms/{roomId}/kick", "POST", cs3 + "/rooms/" + rid + "/kick", "", Send, "membership change (kick): the user waits on it"},
	{"/_matrix/client/v3/rooms/{roomId}/leave", "POST", cs3 + "/rooms/" + rid + "/leave", "", Send, "membership change (leave): the user waits on it"},
	{"/_matrix/client/v3/rooms/{roomId}/read_markers", "POST", cs3 + "/rooms/" + rid + "/read_markers", "", Receipts, "read markers: the stacked-writes incident's request"},
	{"/_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}", "POST", cs3 + "/rooms/" + rid + "/receipt/m.read/" + evt, "", Receipts, "read receipt"},
	{"/_matrix/client/v3/rooms/{roomId}/report", "POST", cs3 + "/rooms/" + rid + "/report", "", Other, "report a room: rare"},
	{"/_matrix/client/v3/rooms/{roomId}/report/{eventId}", "POST", cs3 + "/rooms/" + rid + "/report/" + evt, "", Other, "report an event: rare"},
	{"/_matrix/client/v3/rooms/{roomId}/unban", "POST", cs3 + "/rooms/" + rid + "/unban", "", Send, "membership change (unban): the user waits on it"},
	{"/_matrix/client/v3/rooms/{roomId}/upgrade", "POST", cs3 + "/rooms/" + rid + "/upgrade", "", Send, "room upgrade: a write the user (and the room) waits on"},
	{"/_matrix/client/v3/search", "POST", cs3 + "/search", "next_batch=b1", Search, "server-side search: expensive and deferrable"},
	{"/_matrix/client/v3/user/{userId}/filter", "POST", cs3 + "/user/" + alice + "/filter", "", Discovery, "a first start creates its filter before its first /sync: shedding it would block the sync"},
	{"/_matrix/client/v3/user/{userId}/openid/request_token", "POST", cs3 + "/user/" + alice + "/openid/request_token", "", Auth, "an OpenID token (widgets, Element Call): a credential, like login"},
	{"/_matrix/client/v3/user_directory/search", "POST", cs3 + "/user_directory/search", "", Search, "user directory search: expensive and deferrable"},
	{"/_matrix/client/v3/users/{userId}/report", "POST", cs3 + "/users/" + alice + "/report", "", Other, "report a user: rare"},
	{"/_matrix/federation/v1/get_missing_events/{roomId}", "POST", fd1 + "/get_missing_events/" + rid, "", Federation, "missing events for another server"},
	{"/_matrix/federation/v1/publicRooms", "POST", fd1 + "/publicRooms", "", Federation, "room directory search from another server"},
	{"/_matrix/federation/v1/user/keys/claim", "POST", fd1 + "/user/keys/claim", "", Federation, "one-time key claim from another server"},
	{"/_matrix/federation/v1/user/keys/query", "POST", fd1 + "/user/keys/query", "", Federation, "device key query from another server"},
	{"/_matrix/key/v2/query", "POST", ky2 + "/query", "", Federation, "bulk notary key query: server-to-server"},
	{"/_matrix/media/v1/create", "POST", md1 + "/create", "", Media, "create an MXC URI for an async upload"},
	{"/_matrix/media/v3/upload", "POST", md3 + "/upload", "filename=cat.png", Media, "media upload"},
	{"/_matrix/policy/v1/sign", "POST", pol1 + "/sign", "", Federation, "policy server signature request: server-to-server"},
	{"/_matrix/client/v1/admin/lock/{userId}", "PUT", cs1 + "/admin/lock/" + alice, "", Admin, "spec admin API: lock a user"},
	{"/_matrix/client/v1/admin/suspend/{userId}", "PUT", cs1 + "/admin/suspend/" + alice, "", Admin, "spec admin API: suspend a user"},
	{"/_matrix/client/v3/devices/{deviceId}", "PUT", cs3 + "/devices/QWERTYUIOP", "", Keys, "rename a device: device management"},
	{"/_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}", "PUT", cs3 + "/directory/list/appservice/irc/" + rid, "", Other, "appservice directory visibility: rare"},
	{"/_matrix/client/v3/directory/list/room/{roomId}", "PUT", cs3 + "/directory/list/room/" + rid, "", Other, "publish a room in the directory: rare"},
	{"/_matrix/client/v3/directory/room/{roomAlias}", "PUT", cs3 + "/directory/room/" + alias, "", Other, "alias creation: rare"},
	{"/_matrix/client/v3/presence/{userId}/status", "PUT", cs3 + "/presence/" + alice + "/status", "", Ephemeral, "presence update: worthless when late"},
	{"/_matrix/client/v3/profile/{userId}/{keyName}", "PUT", cs3 + "/profile/" + alice + "/displayname", "", Other, "profile write: fans out member events, but nobody waits on it"},
	{"/_matrix/client/v3/pushrules/global/{kind}/{ruleId}", "PUT", cs3 + "/pushrules/global/override/com.example.rule", "", Other, "push rule write: a settings change, not needed to connect"},
	{"/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions", "PUT", cs3 + "/pushrules/global/override/com.example.rule/actions", "", Other, "push rule write: a settings change, not needed to connect"},
	{"/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled", "PUT", cs3 + "/pushrules/global/override/com.example.rule/enabled", "", Other, "push rule write: a settings change, not needed to connect"},
	{"/_matrix/client/v3/room_keys/keys", "PUT", cs3 + "/room_keys/keys", "version=1", Keys, "key backup (room_keys): end-to-end encryption state: upload"},
	{"/_matrix/client/v3/room_keys/keys/{roomId}", "PUT", cs3 + "/room_keys/keys/" + rid, "version=1", Keys, "key backup (room_keys): end-to-end encryption state: upload"},
	{"/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}", "PUT", cs3 + "/room_keys/keys/" + rid + "/session1", "version=1", Keys, "key backup (room_keys): end-to-end encryption state: upload"},
	{"/_matrix/client/v3/room_keys/version/{version}", "PUT", cs3 + "/room_keys/version/1", "", Keys, "key backup (room_keys): end-to-end encryption state"},
	{"/_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}", "PUT", cs3 + "/rooms/" + rid + "/redact/" + evt + "/m1700000000000.1", "", Send, "redaction: a write the user waits on"},
	{"/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}", "PUT", cs3 + "/rooms/" + rid + "/send/m.room.message/m1700000000000.1", "", Send, "sending a message: critical"},
	{"/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}", "PUT", cs3 + "/rooms/" + rid + "/state/m.room.topic/", "", Send, "setting state: critical"},
	{"/_matrix/client/v3/rooms/{roomId}/typing/{userId}", "PUT", cs3 + "/rooms/" + rid + "/typing/" + alice, "", Ephemeral, "typing notification: worthless when late"},
	{"/_matrix/client/v3/sendToDevice/{eventType}/{txnId}", "PUT", cs3 + "/sendToDevice/m.room.encrypted/m1700000000000.1", "", Keys, "to-device messages carry E2EE key exchange"},
	{"/_matrix/client/v3/user/{userId}/account_data/{type}", "PUT", cs3 + "/user/" + alice + "/account_data/m.direct", "", Other, "account data write (m.direct, secret storage): persistent, not ephemeral"},
	{"/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}", "PUT", cs3 + "/user/" + alice + "/rooms/" + rid + "/account_data/m.marked_unread", "", Other, "room account data write: persistent, not ephemeral"},
	{"/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}", "PUT", cs3 + "/user/" + alice + "/rooms/" + rid + "/tags/m.favourite", "", Other, "room tag write: persistent account data"},
	{"/_matrix/federation/v1/3pid/onbind", "PUT", fd1 + "/3pid/onbind", "", Federation, "identity server callback: server-to-server"},
	{"/_matrix/federation/v1/exchange_third_party_invite/{roomId}", "PUT", fd1 + "/exchange_third_party_invite/" + rid, "", Federation, "3PID invite exchange from another server"},
	{"/_matrix/federation/v1/invite/{roomId}/{eventId}", "PUT", fd1 + "/invite/" + rid + "/" + evt, "", Federation, "invite from another server (v1)"},
	{"/_matrix/federation/v1/send/{txnId}", "PUT", fd1 + "/send/1700000000000", "", Federation, "a federation transaction: PDUs and EDUs"},
	{"/_matrix/federation/v1/send_join/{roomId}/{eventId}", "PUT", fd1 + "/send_join/" + rid + "/" + evt, "", Federation, "join handshake, second half (v1)"},
	{"/_matrix/federation/v1/send_knock/{roomId}/{eventId}", "PUT", fd1 + "/send_knock/" + rid + "/" + evt, "", Federation, "knock handshake, second half"},
	{"/_matrix/federation/v1/send_leave/{roomId}/{eventId}", "PUT", fd1 + "/send_leave/" + rid + "/" + evt, "", Federation, "leave handshake, second half (v1)"},
	{"/_matrix/federation/v2/invite/{roomId}/{eventId}", "PUT", fd2 + "/invite/" + rid + "/" + evt, "", Federation, "invite from another server"},
	{"/_matrix/federation/v2/send_join/{roomId}/{eventId}", "PUT", fd2 + "/send_join/" + rid + "/" + evt, "", Federation, "join handshake, second half"},
	{"/_matrix/federation/v2/send_leave/{roomId}/{eventId}", "PUT", fd2 + "/send_leave/" + rid + "/" + evt, "", Federation, "leave handshake, second half"},
	{"/_matrix/media/v3/upload/{serverName}/{mediaId}", "PUT", md3 + "/upload/example.org/AQwafuaFswefuhsfAFAgsw", "", Media, "upload to a created MXC URI"},

	// Variants of spec endpoints whose class depends on the query or on a
	// form the OpenAPI files do not list.
	{"", "GET", cs3 + "/sync", "since=s72594_4483_1934&timeout=30000", Sync, "since: a long-poll, mostly idle"},
	{"", "GET", cs3 + "/sync", "since=s1&full_state=true", SyncInitial, "full_state=true: a full resync despite since"},
	{"", "GET", cs3 + "/sync", "since=", SyncInitial, "empty since: a full sync"},
	{"", "GET", cs3 + "/sync", "%73ince=s1", Sync, "parameter names are decoded, as homeservers do"},
	{"", "HEAD", cs3 + "/sync", "since=s1", Sync, "HEAD counts as GET"},
	{"", "GET", cs3 + "/rooms/" + rid + "/state/m.room.name", "", History, "one state event with an empty state key: a point read"},
	{"", "GET", cs3 + "/rooms/" + rid + "/state/m.room.name/", "", History, "one state event, empty key written with a trailing slash"},
	{"", "GET", cs3 + "/rooms/" + rid + "/state/", "", RoomState, "the whole state, trailing slash"},
	{"", "POST", cs3 + "/rooms/" + rid + "/send/m.room.message", "", Send, "sending without a transaction ID (Synapse serves it): critical"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/send/m.room.message/m1.2", "org.matrix.msc4140.delay=60000", Send, "scheduling a delayed event (MSC4140): a send"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/state/org.matrix.msc3401.call.member/_" + alice + "_DEVICE", "org.matrix.msc4140.delay=10000", Send, "Element Call's delayed leave state (MSC4140): a send"},
	{"", "PUT", cs3 + "/createRoom/m1.3", "", Send, "room creation, transaction-ID form"},
	{"", "PUT", cs3 + "/join/" + alias + "/m1.4", "", Send, "join, transaction-ID form"},
	{"", "PUT", cs3 + "/knock/" + alias + "/m1.5", "", Send, "knock, transaction-ID form"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/join/m1.6", "", Send, "join by ID, transaction-ID form"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/invite/m1.7", "", Send, "invite, transaction-ID form"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/leave/m1.8", "", Send, "leave, transaction-ID form"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/kick/m1.9", "", Send, "kick, transaction-ID form"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/ban/m1.10", "", Send, "ban, transaction-ID form"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/unban/m1.11", "", Send, "unban, transaction-ID form"},
	{"", "PUT", cs3 + "/rooms/" + rid + "/forget/m1.12", "", Send, "forget, transaction-ID form"},
	{"", "POST", cs3 + "/rooms/" + rid + "/redact/" + evt, "", Send, "redaction without a transaction ID (Synapse)"},
	{"", "POST", cs3 + "/keys/upload/QWERTYUIOP", "", Keys, "key upload with the device ID in the path (r0 era)"},
	{"", "GET", cs3 + "/login/cas/redirect", "redirectUrl=https%3A%2F%2Fapp.example.org%2F", Auth, "CAS login start (Synapse)"},
	{"", "GET", cs3 + "/login/cas/ticket", "ticket=ST-1&redirectUrl=x", Auth, "CAS login ticket (Synapse)"},
	{"", "GET", cs3 + "/auth/m.login.recaptcha/fallback/web", "session=s1", Auth, "user-interactive auth fallback page"},
	{"", "GET", cs3 + "/password_policy", "", Auth, "the registration form's password rules (Synapse)"},
	{"", "POST", cs3 + "/account_validity/renew", "token=t", Auth, "account validity renewal (Synapse): keeps the account usable"},
	{"", "POST", cs3 + "/account_validity/send_mail", "", Auth, "account validity renewal mail (Synapse)"},
	{"", "GET", cs3 + "/registration/email/submit_token", "sid=1&client_secret=s&token=t", Auth, "registration email link (Synapse)"},
	{"", "GET", csU + "/add_threepid/email/submit_token", "sid=1&client_secret=s&token=t", Auth, "3PID email link (Synapse)"},
	{"", "POST", cs3 + "/pushrules/global/override/x", "", Other, "push rules are GET-only in discovery; a wrong method is a cheap 405"},
	{"", "OPTIONS", cs3 + "/sync", "", Other, "a CORS preflight: the gate handles preflights before classification"},
	{"", "HEAD", csRoot + "/versions", "", Discovery, "HEAD counts as GET"},
	{"", "GET", csRoot + "/versions/", "", Discovery, "trailing slash tolerated"},
	{"", "POST", csRoot + "/versions", "", Other, "no such endpoint: a cheap 405"},
	{"", "GET", wk + "/unknown", "", Discovery, "any /.well-known/matrix document is a static file"},

	// Legacy prefixes clients and bridges still send.
	{"", "GET", csR0 + "/sync", "since=s1", Sync, "r0 long-poll"},
	{"", "GET", csR0 + "/sync", "", SyncInitial, "r0 initial sync"},
	{"", "GET", csAPI1 + "/events", "from=s1", Sync, "the original v1 event stream: a long-poll"},
	{"", "GET", csAPI1 + "/initialSync", "", SyncInitial, "the original v1 initial sync"},
	{"", "GET", csAPI1 + "/rooms/" + rid + "/messages", "dir=b", History, "v1 timeline"},
	{"", "PUT", csR0 + "/rooms/" + rid + "/send/m.room.message/t1", "", Send, "r0 send"},
	{"", "POST", csR0 + "/login", "", Auth, "r0 login"},
	{"", "GET", csR0 + "/pushrules/", "", Discovery, "r0 push rules"},
	{"", "GET", csR0 + "/capabilities", "", Discovery, "r0 capabilities"},
	{"", "GET", "/_matrix/media/r0/download/example.org/abc", "", Media, "r0 media download"},
	{"", "GET", "/_matrix/media/r0/thumbnail/example.org/abc", "width=32&height=32", Media, "r0 thumbnail"},
	{"", "GET", md1 + "/download/example.org/abc", "", Media, "v1 media download"},

	// Sliding sync (MSC4186 in Synapse; MSC3575 in the old proxy).
	{"", "POST", csU + "/org.matrix.simplified_msc3575/sync", "timeout=30000", SyncInitial, "no pos: a new connection, room list and required state over all rooms, an initial sync"},
	{"", "POST", csU + "/org.matrix.simplified_msc3575/sync", "pos=12_34&timeout=30000", Sync, "pos: continues a connection, a long-poll"},
	{"", "POST", csU + "/org.matrix.simplified_msc3575/sync", "pos=", SyncInitial, "empty pos: a new connection"},
	{"", "POST", csU + "/org.matrix.simplified_msc3575/sync", "%70os=12", Sync, "parameter names are decoded"},
	{"", "POST", csU + "/org.matrix.simplified_msc3575/sync", "pos=%zz", SyncInitial, "an undecodable pos is ignored: a new connection"},
	{"", "GET", csU + "/org.matrix.simplified_msc3575/sync", "", Other, "sliding sync is POST only: a cheap 405"},
	{"", "POST", csU + "/org.matrix.msc3575/sync", "", SyncInitial, "proxy-era sliding sync without pos: a new connection"},
	{"", "POST", csU + "/org.matrix.msc3575/sync", "pos=5", Sync, "proxy-era sliding sync with pos: a long-poll"},

	// Delayed events (MSC4140): Element Call's heartbeat and hang-up.
	{"", "GET", csU + "/org.matrix.msc4140/delayed_events", "", Other, "the user's scheduled delayed events: a read"},
	{"", "POST", csU + "/org.matrix.msc4140/delayed_events/syd_abc", "", Send, "delayed event action in the body: a shed restart sends the user's delayed leave"},
	{"", "POST", csU + "/org.matrix.msc4140/delayed_events/syd_abc/restart", "", Send, "restart: Element Call's heartbeat"},
	{"", "POST", csU + "/org.matrix.msc4140/delayed_events/syd_abc/cancel", "", Send, "cancel a delayed event"},
	{"", "POST", csU + "/org.matrix.msc4140/delayed_events/syd_abc/send", "", Send, "send a delayed event now"},

	// Next-generation auth (MSC2965) and QR login (MSC4108, MSC4388).
	{"", "GET", csU + "/org.matrix.msc2965/auth_metadata", "", Discovery, "OAuth server metadata, unstable: as v1/auth_metadata"},
	{"", "GET", csU + "/org.matrix.msc2965/auth_issuer", "", Discovery, "OAuth issuer discovery: static, needed before login"},
	{"", "POST", csU + "/org.matrix.msc4108/rendezvous", "", Auth, "QR login rendezvous: logging in"},
	{"", "POST", csU + "/io.element.msc4388/rendezvous", "", Auth, "QR login rendezvous: logging in"},
	{"", "GET", csU + "/io.element.msc4388/rendezvous/abc", "", Auth, "QR login rendezvous session: logging in"},
	{"", "POST", csU + "/org.matrix.msc3882/login/token", "", Auth, "login token for another device, unstable"},

	// Dehydrated devices (MSC3814, earlier MSC2697).
	{"", "GET", csU + "/org.matrix.msc3814.v1/dehydrated_device", "", Keys, "dehydrated device: E2EE keys held for offline receipt"},
	{"", "PUT", csU + "/org.matrix.msc3814.v1/dehydrated_device", "", Keys, "dehydrated device upload: E2EE"},
	{"", "DELETE", csU + "/org.matrix.msc3814.v1/dehydrated_device", "", Keys, "dehydrated device removal: E2EE"},
	{"", "POST", csU + "/org.matrix.msc3814.v1/dehydrated_device/QWERTYUIOP/events", "", Keys, "to-device events of a dehydrated device: E2EE"},
	{"", "GET", csU + "/org.matrix.msc2697.v2/dehydrated_device", "", Keys, "dehydrated device, MSC2697: E2EE"},
	{"", "POST", csU + "/org.matrix.msc2697.v2/dehydrated_device/claim", "", Keys, "dehydrated device claim, MSC2697: E2EE"},
	{"", "POST", csU + "/org.matrix.msc3983/keys/claim", "", Keys, "one-time key claim with fallback, unstable: E2EE"},

	// Other unstable endpoints in use.
	{"", "GET", csU + "/org.matrix.msc2946/rooms/" + rid + "/hierarchy", "", Search, "space hierarchy, unstable: expensive and deferrable"},
	{"", "GET", csU + "/org.matrix.msc3030/rooms/" + rid + "/timestamp_to_event", "ts=1&dir=f", History, "jump to date, unstable: a timeline lookup"},
	{"", "GET", csU + "/org.matrix.msc4143/rtc/transports", "", Discovery, "MatrixRTC transports (Element Call's focus): static config needed to start a call"},
	{"", "GET", csU + "/im.nheko.summary/rooms/" + rid + "/summary", "", Other, "room summary, unstable: one preview"},
	{"", "GET", csU + "/im.nheko.summary/summary/" + alias, "", Other, "room summary, later unstable path: one preview"},
	{"", "GET", csU + "/uk.half-shot.msc2666/user/mutual_rooms", "user_id=%40bob%3Aexample.org", Other, "mutual rooms, unstable: a profile view"},
	{"", "GET", csU + "/uk.tcpip.msc4133/profile/" + alice + "/m.tz", "", Other, "extended profile field read"},
	{"", "PUT", csU + "/uk.tcpip.msc4133/profile/" + alice + "/m.tz", "", Other, "extended profile field write"},
	{"", "DELETE", csU + "/org.matrix.msc3391/user/" + alice + "/account_data/m.secret_storage.key.abc", "", Other, "account data deletion: persistent user state"},
	{"", "DELETE", csU + "/org.matrix.msc3391/user/" + alice + "/rooms/" + rid + "/account_data/m.marked_unread", "", Other, "room account data deletion: persistent user state"},
	{"", "GET", csU + "/org.matrix.msc2432/rooms/" + rid + "/aliases", "", Other, "room aliases, unstable: cheap"},
	{"", "PUT", csU + "/io.element.msc4306/rooms/" + rid + "/thread/" + evt + "/subscription", "", Other, "thread subscription: a settings write"},
	{"", "GET", csU + "/io.element.msc4308/thread_subscriptions", "", Other, "thread subscription list: cheap"},
	{"", "GET", csU + "/org.matrix.msc3720/account_status", "user_id=%40bob%3Aexample.org", Other, "account status lookup: rare"},
	{"", "GET", csU + "/org.matrix.msc1763/retention/configuration", "", Other, "retention policy config: rare"},
	{"", "POST", csU + "/pushers/remove", "", Other, "pusher removal (Synapse): not needed to connect"},

	// Synapse's own pages: the second half of SSO is logging in.
	{"", "GET", synC + "/pick_idp", "redirectUrl=https%3A%2F%2Fapp.example.org%2F", Auth, "SSO: pick an identity provider"},
	{"", "GET", synC + "/pick_idp", "redirectUrl=x&idp=oidc-github", Auth, "SSO: the chosen identity provider"},
	{"", "GET", synC + "/oidc/callback", "code=c&state=s", Auth, "SSO: the OIDC provider's redirect back, logging in"},
	{"", "POST", synC + "/oidc/callback", "", Auth, "SSO: OIDC form_post response"},
	{"", "POST", synC + "/oidc/backchannel_logout", "", Auth, "SSO: the provider logs a session out"},
	{"", "GET", synC + "/pick_username/account_details", "", Auth, "SSO registration: choose a username"},
	{"", "POST", synC + "/pick_username/account_details", "", Auth, "SSO registration: submit the username"},
	{"", "GET", synC + "/pick_username/check", "username=alice", Auth, "SSO registration: username availability"},
	{"", "GET", synC + "/new_user_consent", "", Auth, "SSO registration: terms consent page"},
	{"", "POST", synC + "/new_user_consent", "", Auth, "SSO registration: consent given"},
	{"", "GET", synC + "/sso_register", "", Auth, "SSO registration: completes the account"},
	{"", "POST", synC + "/saml2/authn_response", "", Auth, "SSO: the SAML provider's response, logging in"},
	{"", "GET", synC + "/saml2/metadata.xml", "", Auth, "SSO: SAML service provider metadata"},
	{"", "GET", synC + "/password_reset/email/submit_token", "sid=1&client_secret=s&token=t", Auth, "password reset link page"},
	{"", "POST", synC + "/password_reset/email/submit_token", "", Auth, "password reset confirmation"},
	{"", "POST", synC + "/rendezvous", "", Auth, "QR login rendezvous (MSC4108 on Synapse): logging in"},
	{"", "GET", synC + "/rendezvous/abc", "", Auth, "QR login rendezvous session: logging in"},
	{"", "PUT", synC + "/rendezvous/abc", "", Auth, "QR login rendezvous session update: logging in"},
	{"", "DELETE", synC + "/rendezvous/abc", "", Auth, "QR login rendezvous session end: logging in"},
	{"", "GET", synC + "/unsubscribe", "access_token=t&app_id=a&pushkey=k", Other, "email notification unsubscribe link: not logging in"},
	{"", "GET", synC + "/v1/config/federation_whitelist", "", Other, "federation whitelist config: rare"},
	{"", "GET", synC + "/unknown", "", Other, "an unknown Synapse client page"},

	// Synapse's API for the Matrix Authentication Service: logins and
	// sessions are provisioned through it.
	{"", "GET", synM + "/query_user", "localpart=alice", Auth, "MAS provisioning: login"},
	{"", "POST", synM + "/provision_user", "", Auth, "MAS provisioning: registration"},
	{"", "GET", synM + "/is_localpart_available", "localpart=alice", Auth, "MAS provisioning: registration"},
	{"", "POST", synM + "/upsert_device", "", Auth, "MAS provisioning: a new session"},
	{"", "POST", synM + "/delete_device", "", Auth, "MAS provisioning: a session ends"},
	{"", "POST", synM + "/sync_devices", "", Auth, "MAS provisioning: session list"},

	// Synapse's admin API: never shed by brownout.
	{"", "GET", synA + "/v1/server_version", "", Admin, "admin API: server version"},
	{"", "GET", synA + "/v2/users", "from=0&limit=10", Admin, "admin API: list users"},
	{"", "GET", synA + "/v3/users", "limit=10", Admin, "admin API: list users (v3)"},
	{"", "GET", synA + "/v2/users/%40bob%3Aexample.org", "", Admin, "admin API: one user"},
	{"", "PUT", synA + "/v2/users/%40bob%3Aexample.org", "", Admin, "admin API: create or modify a user"},
	{"", "GET", synA + "/v1/register", "", Admin, "admin API: shared-secret registration nonce"},
	{"", "POST", synA + "/v1/register", "", Admin, "admin API: shared-secret registration"},
	{"", "POST", synA + "/v1/deactivate/%40bob%3Aexample.org", "", Admin, "admin API: deactivate a user"},
	{"", "PUT", synA + "/v1/suspend/%40bob%3Aexample.org", "", Admin, "admin API: suspend a user"},
	{"", "POST", synA + "/v1/account_validity/validity", "", Admin, "admin API: extend account validity"},
	{"", "POST", synA + "/v1/reset_password/%40bob%3Aexample.org", "", Admin, "admin API: reset a password"},
	{"", "GET", synA + "/v1/search_users/%40bob%3Aexample.org", "", Admin, "admin API: search users (legacy)"},
	{"", "PUT", synA + "/v1/users/%40bob%3Aexample.org/admin", "", Admin, "admin API: make a server admin"},
	{"", "GET", synA + "/v1/users/%40bob%3Aexample.org/joined_rooms", "", Admin, "admin API: a user's rooms"},
	{"", "GET", synA + "/v1/users/%40bob%3Aexample.org/memberships", "", Admin, "admin API: a user's memberships"},
	{"", "GET", synA + "/v1/users/%40bob%3Aexample.org/pushers", "", Admin, "admin API: a user's pushers"},
	{"", "POST", synA + "/v1/users/%40bob%3Aexample.org/login", "", Admin, "admin API: log in as a user"},
	{"", "POST", synA + "/v1/users/%40bob%3Aexample.org/shadow_ban", "", Admin, "admin API: shadow-ban a user"},
	{"", "POST", synA + "/v1/users/%40bob%3Aexample.org/override_ratelimit", "", Admin, "admin API: override a rate limit"},
	{"", "GET", synA + "/v1/users/%40bob%3Aexample.org/accountdata", "", Admin, "admin API: a user's account data"},
	{"", "POST", synA + "/v1/users/%40bob%3Aexample.org/_allow_cross_signing_replacement_without_uia", "", Admin, "admin API: allow cross-signing reset"},
	{"", "GET", synA + "/v1/auth_providers/oidc/users/12345", "", Admin, "admin API: user by SSO ID"},
	{"", "GET", synA + "/v1/threepid/email/users/bob%40example.org", "", Admin, "admin API: user by 3PID"},
	{"", "POST", synA + "/v1/user/%40bob%3Aexample.org/redact", "", Admin, "admin API: redact a user's events"},
	{"", "GET", synA + "/v1/user/redact_status/abc", "", Admin, "admin API: redaction progress"},
	{"", "GET", synA + "/v1/users/%40bob%3Aexample.org/sent_invite_count", "", Admin, "admin API: invite count"},
	{"", "GET", synA + "/v1/users/%40bob%3Aexample.org/cumulative_joined_room_count", "", Admin, "admin API: joined room count"},
	{"", "GET", synA + "/v2/users/%40bob%3Aexample.org/devices", "", Admin, "admin API: a user's devices"},
	{"", "DELETE", synA + "/v2/users/%40bob%3Aexample.org/devices/QWERTYUIOP", "", Admin, "admin API: delete a user's device"},
	{"", "POST", synA + "/v2/users/%40bob%3Aexample.org/delete_devices", "", Admin, "admin API: delete a user's devices"},
	{"", "GET", synA + "/v1/users/%40bob%3Aexample.org/media", "", Admin, "admin API: a user's media"},
	{"", "DELETE", synA + "/v1/users/%40bob%3Aexample.org/media", "", Admin, "admin API: delete a user's media"},
	{"", "POST", synA + "/v1/user/%40bob%3Aexample.org/media/quarantine", "", Admin, "admin API: quarantine a user's media"},
	{"", "GET", synA + "/v1/rooms", "order_by=joined_members", Admin, "admin API: list rooms"},
	{"", "GET", synA + "/v1/rooms/" + rid, "", Admin, "admin API: one room"},
	{"", "DELETE", synA + "/v1/rooms/" + rid, "", Admin, "admin API: delete a room (v1)"},
	{"", "DELETE", synA + "/v2/rooms/" + rid, "", Admin, "admin API: delete a room: the incident tool"},
	{"", "GET", synA + "/v2/rooms/" + rid + "/delete_status", "", Admin, "admin API: room deletion progress"},
	{"", "GET", synA + "/v2/rooms/delete_status/abc", "", Admin, "admin API: room deletion progress by ID"},
	{"", "GET", synA + "/v1/rooms/" + rid + "/members", "", Admin, "admin API: a room's members"},
	{"", "GET", synA + "/v1/rooms/" + rid + "/state", "", Admin, "admin API: a room's state"},
	{"", "GET", synA + "/v1/rooms/" + rid + "/messages", "dir=b", Admin, "admin API: a room's messages"},
	{"", "GET", synA + "/v1/rooms/" + rid + "/context/" + evt, "", Admin, "admin API: events around one event"},
	{"", "GET", synA + "/v1/rooms/" + rid + "/timestamp_to_event", "ts=1&dir=f", Admin, "admin API: jump to date"},
	{"", "GET", synA + "/v1/rooms/" + rid + "/hierarchy", "", Admin, "admin API: a space's hierarchy"},
	{"", "PUT", synA + "/v1/rooms/" + rid + "/block", "", Admin, "admin API: block a room"},
	{"", "GET", synA + "/v1/rooms/" + rid + "/block", "", Admin, "admin API: room block status"},
	{"", "POST", synA + "/v1/rooms/" + rid + "/make_room_admin", "", Admin, "admin API: make a room admin"},
	{"", "GET", synA + "/v1/rooms/" + rid + "/forward_extremities", "", Admin, "admin API: forward extremities"},
	{"", "DELETE", synA + "/v1/rooms/" + rid + "/forward_extremities", "", Admin, "admin API: clear forward extremities"},
	{"", "POST", synA + "/v1/join/" + alias, "", Admin, "admin API: join a user to a room"},
	{"", "POST", synA + "/v1/purge_history/" + rid, "", Admin, "admin API: purge history"},
	{"", "GET", synA + "/v1/purge_history_status/abc", "", Admin, "admin API: purge progress"},
	{"", "POST", synA + "/v1/purge_media_cache", "before_ts=1", Admin, "admin API: purge remote media"},
	{"", "GET", synA + "/v1/media/example.org/abc", "", Admin, "admin API: media info"},
	{"", "DELETE", synA + "/v1/media/example.org/abc", "", Admin, "admin API: delete media"},
	{"", "POST", synA + "/v1/media/delete", "before_ts=1", Admin, "admin API: delete old media"},
	{"", "POST", synA + "/v1/media/example.org/delete", "before_ts=1", Admin, "admin API: delete a server's media"},
	{"", "POST", synA + "/v1/media/quarantine/example.org/abc", "", Admin, "admin API: quarantine media"},
	{"", "POST", synA + "/v1/media/unquarantine/example.org/abc", "", Admin, "admin API: unquarantine media"},
	{"", "GET", synA + "/v1/media/quarantine_changes", "", Admin, "admin API: quarantine changes"},
	{"", "POST", synA + "/v1/media/protect/abc", "", Admin, "admin API: protect media"},
	{"", "POST", synA + "/v1/media/unprotect/abc", "", Admin, "admin API: unprotect media"},
	{"", "GET", synA + "/v1/room/" + rid + "/media", "", Admin, "admin API: a room's media"},
	{"", "POST", synA + "/v1/room/" + rid + "/media/quarantine", "", Admin, "admin API: quarantine a room's media"},
	{"", "POST", synA + "/v1/quarantine_media/" + rid, "", Admin, "admin API: quarantine a room's media (legacy)"},
	{"", "GET", synA + "/v1/registration_tokens", "", Admin, "admin API: registration tokens"},
	{"", "POST", synA + "/v1/registration_tokens/new", "", Admin, "admin API: new registration token"},
	{"", "PUT", synA + "/v1/registration_tokens/abcd", "", Admin, "admin API: update a registration token"},
	{"", "DELETE", synA + "/v1/registration_tokens/abcd", "", Admin, "admin API: delete a registration token"},
	{"", "GET", synA + "/v1/background_updates/status", "", Admin, "admin API: background update status"},
	{"", "POST", synA + "/v1/background_updates/enabled", "", Admin, "admin API: pause background updates"},
	{"", "POST", synA + "/v1/background_updates/start_job", "", Admin, "admin API: start a background job"},
	{"", "GET", synA + "/v1/federation/destinations", "", Admin, "admin API: federation destinations"},
	{"", "GET", synA + "/v1/federation/destinations/example.com", "", Admin, "admin API: one destination"},
	{"", "GET", synA + "/v1/federation/destinations/example.com/rooms", "", Admin, "admin API: rooms shared with a destination"},
	{"", "POST", synA + "/v1/federation/destinations/example.com/reset_connection", "", Admin, "admin API: reset a destination's backoff"},
	{"", "POST", synA + "/v1/send_server_notice", "", Admin, "admin API: server notice"},
	{"", "PUT", synA + "/v1/send_server_notice/txn1", "", Admin, "admin API: server notice, transaction-ID form"},
	{"", "GET", synA + "/v1/event_reports", "", Admin, "admin API: event reports"},
	{"", "GET", synA + "/v1/event_reports/1", "", Admin, "admin API: one event report"},
	{"", "DELETE", synA + "/v1/event_reports/1", "", Admin, "admin API: delete an event report"},
	{"", "GET", synA + "/v1/user_reports", "", Admin, "admin API: user reports"},
	{"", "GET", synA + "/v1/statistics/users/media", "", Admin, "admin API: media statistics"},
	{"", "GET", synA + "/v1/statistics/database/rooms", "", Admin, "admin API: database statistics"},
	{"", "GET", synA + "/v1/username_available", "username=bob", Admin, "admin API: username availability"},
	{"", "GET", synA + "/v1/experimental_features/%40bob%3Aexample.org", "", Admin, "admin API: experimental features"},
	{"", "GET", synA + "/v1/scheduled_tasks", "", Admin, "admin API: scheduled tasks"},
	{"", "GET", synA + "/v1/fetch_event/" + evt, "", Admin, "admin API: fetch one event"},
	{"", "GET", synA + "/v1/whois/%40bob%3Aexample.org", "", Admin, "admin API: whois (Synapse path)"},
	{"", "GET", synA + "/v1/unknown", "", Admin, "admin API: any admin path, known or not, is the operator's"},
}

// TestSpecSamples classifies every sample and checks it has a reason.
func TestSpecSamples(t *testing.T) {
	for _, s := range specSamples {
		if strings.TrimSpace(s.reason) == "" {
			t.Errorf("%s %s: no reason for its class", s.method, s.path)
		}
		if got := Classify(s.method, s.path, s.query).Class; got != s.class {
			t.Errorf("Classify(%s %s?%s) = %v, want %v (%s)", s.method, s.path, s.query, got, s.class, s.reason)
		}
	}
}

// TestSpecEndpointsCovered checks the table against the spec's endpoint
// list: every endpoint and method has a sample, every sample that names a
// spec endpoint names one that exists, with its method, and its path is an
// instance of the endpoint's template.
func TestSpecEndpointsCovered(t *testing.T) {
	endpoints := readSpecEndpoints(t)
	sampled := make(map[specEndpoint]bool)
	for _, s := range specSamples {
		if s.spec == "" {
			continue
		}
		ep := specEndpoint{s.method, s.spec}
		if !endpoints[ep] {
			t.Errorf("sample %s %s names %s %s, which is not in the spec's endpoint list", s.method, s.path, s.method, s.spec)
			continue
		}
		if !matchesTemplate(s.spec, s.path) {
			t.Errorf("sample path %s is not an instance of %s", s.path, s.spec)
		}
		sampled[ep] = true
	}
	for ep := range endpoints {
		if !sampled[ep] {
			t.Errorf("spec endpoint %s %s has no sample", ep.method, ep.template)
		}
	}
	if len(endpoints) < 190 {
		t.Errorf("only %d spec endpoints read: is testdata/spec_endpoints.txt truncated?", len(endpoints))
	}
}

type specEndpoint struct{ method, template string }

// readSpecEndpoints reads testdata/spec_endpoints.txt: "METHOD template file
// operationId" lines, # comments.
func readSpecEndpoints(t *testing.T) map[specEndpoint]bool {
	t.Helper()
	f, err := os.Open("testdata/spec_endpoints.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	endpoints := make(map[specEndpoint]bool)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 4 {
			t.Fatalf("malformed line %q", line)
		}
		endpoints[specEndpoint{fields[0], fields[1]}] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return endpoints
}

// matchesTemplate reports whether path is template with each {param}
// replaced by one segment (possibly empty: an empty state key).
func matchesTemplate(template, path string) bool {
	ts, ps := strings.Split(template, "/"), strings.Split(path, "/")
	if len(ts) != len(ps) {
		return false
	}
	for i, seg := range ts {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			if strings.Contains(ps[i], "{") {
				return false // a template left unfilled
			}
			continue
		}
		if seg != ps[i] {
			return false
		}
	}
	return true
}
