/*
 * The HTTP server of 'pgvigil run', on libmicrohttpd: /metrics, /healthz,
 * /readyz and the /feed stream (Server-Sent Events, or JSON lines with
 * ?format=jsonl), with filters and resume by id.
 *
 * Zero trust: a listener off loopback must have TLS (policy http.tls_cert
 * and tls_key) and a way to authenticate clients (http.tls_client_ca for
 * mTLS, http.token_file for a bearer token, or both: either credential is
 * enough); http_start refuses otherwise. When a token or a client CA is
 * configured every request must present one, on loopback too; /metrics
 * is exempt only when http.metrics_open is true.
 *
 * Threads: libmicrohttpd runs a listening thread and one thread per
 * connection (so a /feed stream may block on the feed); connections are
 * capped (HTTP_MAX_CONNECTIONS, fewer per client address). Each stream
 * owns one feed_reader. Shutdown order: http_stop (streams notice within
 * a second, their threads are joined), then feed_close and metrics_free.
 */
#ifndef USER_HTTP_H
#define USER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HTTP_DEFAULT_LISTEN "127.0.0.1:9187"
#define HTTP_MAX_CONNECTIONS 64
#define HTTP_MAX_PER_ADDRESS 16
/* request line and headers; a larger request is refused by the library */
#define HTTP_MAX_REQUEST_BYTES 16384
/* /feed response header: the id the stream starts after */
#define HTTP_CURSOR_HEADER "Pgvigil-Cursor"

struct feed;
struct policy_http;
struct http_server;

struct http_config {
	const char *listen;		/* "ADDR:PORT", "[V6]:PORT"; NULL: default */
	const struct policy_http *policy; /* TLS and auth; NULL: none */
	struct feed *feed;		/* /feed source; NULL: 503 */
	/*
	 * /readyz asks this from an HTTP thread: true while every probe is
	 * attached and the ring buffer was drained within the daemon's bound.
	 * NULL: always ready (a server without probes, in tests).
	 */
	bool (*ready)(void *arg);
	void *ready_arg;
	int keepalive_ms;		/* SSE comment interval; 0: 10 s */
};

/* Credentials a request must present; filled by http_auth_load. */
struct http_auth {
	bool required;
	bool token;			/* a bearer token is accepted */
	unsigned char token_digest[32];	/* SHA-256 of the token */
	bool mtls;			/* a client certificate is accepted */
	bool metrics_open;
};

/*
 * Parse "ADDR:PORT" (IPv4, or IPv6 in brackets; port 0 picks one), or
 * "PORT" / ":PORT" for 127.0.0.1. Returns 0 or -EINVAL.
 */
int http_parse_listen(const char *text, struct sockaddr_storage *addr,
		      socklen_t *len);

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool http_is_loopback(const struct sockaddr *addr);

/*
 * Read the token file (first line; it must not be readable by group or
 * others) and decide what requests must present. Returns 0 or a negative
 * errno with a message in err.
 */
int http_auth_load(const struct policy_http *policy, struct http_auth *auth,
		   char *err, size_t err_len);

/*
 * Check one request. 'authorization' is its Authorization header or NULL;
 * 'cert_verified' says the TLS layer verified a client certificate against
 * the client CA. The token is compared in constant time (digests through
 * CRYPTO_memcmp, so neither its content nor its length leaks). Returns 0,
 * -ENOENT when no credential was presented, -EACCES when a wrong one was.
 */
int http_auth_check(const struct http_auth *auth, const char *authorization,
		    bool cert_verified);

/*
 * Start serving. The config and what it points to must outlive the
 * server. Returns 0 or a negative errno with a message in err (for
 * example -EPERM for an off-loopback listener without TLS and auth).
 */
int http_start(const struct http_config *config, struct http_server **out,
	       char *err, size_t err_len);

/* The bound port (useful with port 0). */
uint16_t http_port(const struct http_server *server);

/* Stop: ends every stream, joins the threads, frees the server. */
void http_stop(struct http_server *server);

#endif /* USER_HTTP_H */
