package scenario

import "fmt"

// caddyfile is plain Caddy in front of the homeserver, or with the mxgate
// directive at its defaults.
func caddyfile(listen, upstream string, withMxgate bool) string {
	gate := ""
	if withMxgate {
		gate = "\tmxgate\n"
	}
	return fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}
http://%s {
%s	reverse_proxy %s
}
`, listen, gate, upstream)
}

// nginxConf is the limit_req/limit_conn setup a Synapse operator writes: a
// per-client request rate with a burst, and a cap on connections to the
// server. The per-client key is the Authorization header rather than the
// usual $binary_remote_addr, because every simulated client comes from
// 127.0.0.1 and a per-IP key would limit the whole population as one client.
func nginxConf(dir, listen, upstream string) string {
	return fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;

	limit_req_zone $http_authorization zone=perclient:10m rate=10r/s;
	limit_conn_zone $server_name zone=perserver:1m;
	limit_req_status 429;
	limit_conn_status 429;

	upstream synapse {
		server %[3]s;
		keepalive 32;
	}
	server {
		listen %[2]s;
		location /_matrix {
			limit_req zone=perclient burst=20 nodelay;
			limit_conn perserver 512;
			proxy_pass http://synapse;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $remote_addr;
			client_max_body_size 50M;
			proxy_read_timeout 120s;
		}
	}
}
`, dir, listen, upstream)
}

// haproxyConf caps connections to the homeserver with maxconn and queues the
// rest for up to 10 s. The cap has room for the idle long-poll syncs, which
// HAProxy cannot tell from active work.
func haproxyConf(listen, upstream string) string {
	return fmt.Sprintf(`global
	maxconn 8192
defaults
	mode http
	timeout connect 5s
	timeout client 120s
	timeout server 120s
	timeout queue 10s
frontend matrix
	bind %s
	default_backend synapse
backend synapse
	server homeserver %s maxconn 256
`, listen, upstream)
}
