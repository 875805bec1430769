/* The cheapest scanning milter C can make on libmilter: it buffers the message as spamd
 * should see it, sends it to spamd with REPORT over one TCP connection per message (SPAMC
 * has no keep-alive), parses the Spam: line and adds one X-Spam-Status header. It is the
 * floor for "a milter that scans" in the benchmarks, beside nullfilter (which never scans).
 * Fails open: on any spamd error it adds nothing and lets the message through.
 * It negotiates what spambridge negotiates with its default options (wanted() in
 * spambridge/session.py): no reply to connect, HELO, MAIL, RCPT, DATA, headers, end of
 * headers and body chunks (a body past the size limit is read and dropped, as spambridge
 * does without +skip-body); headers with their leading space; no unknown commands; and only
 * the ADDHDRS action. Steps it has no callback for (connect, HELO, MAIL, RCPT, DATA) are not
 * sent at all, where the MTA offers that.
 * Build: cc -O2 -o nullscan nullscan.c -lmilter -lpthread
 * Run:   nullscan inet:PORT@127.0.0.1 SPAMD_HOST SPAMD_PORT
 */
#include <libmilter/mfapi.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

/* spamc's and spambridge's default size limit: larger messages are let through unscanned,
 * and are not buffered past it (the memory phase sends 50 MB). */
#define MAX_SCAN (500 * 1024)
#define SPAMD_TIMEOUT 30 /* seconds, per send/receive: a hung spamd must not hold a thread */

static struct addrinfo *spamd_addr; /* resolved once in main(), read-only afterwards */

/* What we ask for: spambridge's default negotiation (NR_BODY, so no SKIP). */
#define WANT_ACTIONS SMFIF_ADDHDRS
#define WANT_NOREPLY (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | \
		      SMFIP_NR_DATA | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY)
#define WANT_PROTOCOL (WANT_NOREPLY | SMFIP_HDR_LEADSPC | SMFIP_NOUNKNOWN)
/* Steps we have no callback for: the MTA need not send them at all. */
#define NOT_NEEDED (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NODATA)

/* One per MTA connection, made at negotiation; reused for every message on it. */
struct msg {
	char *buf;
	size_t len, cap;
	int oversize;
	int leadspc;                          /* values keep their leading space */
	sfsistat hdr_rc, eoh_rc, body_rc;     /* SMFIS_NOREPLY where negotiated */
};

/* Make room for `len` more bytes; 0 if the message is (now) past the scan limit. */
static int reserve(struct msg *m, size_t len)
{
	if (m->oversize)
		return 0;
	if (m->len + len > MAX_SCAN) {
		m->oversize = 1;
		return 0;
	}
	if (m->len + len > m->cap) {
		size_t cap = m->cap ? m->cap : 8192;
		char *grown;

		while (cap < m->len + len)
			cap *= 2;
		grown = realloc(m->buf, cap);
		if (grown == NULL) { /* out of memory: do not scan this one */
			m->oversize = 1;
			return 0;
		}
		m->buf = grown;
		m->cap = cap;
	}
	return 1;
}

static void reset(struct msg *m)
{
	m->len = 0;
	m->oversize = 0;
}

static sfsistat scan_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			       unsigned long f2, unsigned long f3, unsigned long *pf0,
			       unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	struct msg *m = smfi_getpriv(ctx);
	unsigned long protocol;

	(void)f2;
	(void)f3;
	if (m == NULL) {
		m = calloc(1, sizeof(*m));
		if (m == NULL || smfi_setpriv(ctx, m) != MI_SUCCESS) {
			free(m);
			return SMFIS_ALL_OPTS; /* libmilter's defaults; callbacks then reply */
		}
	}
	/* f0/f1: what the MTA offers (libmilter adds the NR_* bits, which it can fake); ask
	 * only for bits in them, or the MTA (and libmilter) fail the negotiation. */
	protocol = (WANT_PROTOCOL | NOT_NEEDED) & f1;
	*pf0 = WANT_ACTIONS & f0;
	*pf1 = protocol;
	*pf2 = 0;
	*pf3 = 0;
	m->leadspc = (protocol & SMFIP_HDR_LEADSPC) != 0;
	m->hdr_rc = protocol & SMFIP_NR_HDR ? SMFIS_NOREPLY : SMFIS_CONTINUE;
	m->eoh_rc = protocol & SMFIP_NR_EOH ? SMFIS_NOREPLY : SMFIS_CONTINUE;
	m->body_rc = protocol & SMFIP_NR_BODY ? SMFIS_NOREPLY : SMFIS_CONTINUE;
	reset(m);
	return SMFIS_CONTINUE;
}

static sfsistat scan_header(SMFICTX *ctx, char *name, char *value)
{
	struct msg *m = smfi_getpriv(ctx);
	size_t nlen, vlen, sep;
	char *p;

	if (m == NULL)
		return SMFIS_CONTINUE;
	nlen = strlen(name);
	vlen = strlen(value);
	/* With HDR_LEADSPC the value is exactly what followed the colon. Without it the MTA
	 * strips one space after the colon, so put one back. */
	sep = m->leadspc ? 1 : 2;
	if (reserve(m, nlen + sep + vlen + 2)) {
		p = m->buf + m->len;
		memcpy(p, name, nlen);
		p += nlen;
		memcpy(p, ": ", sep);
		p += sep;
		memcpy(p, value, vlen);
		p += vlen;
		memcpy(p, "\r\n", 2);
		m->len += nlen + sep + vlen + 2;
	}
	return m->hdr_rc;
}

static sfsistat scan_eoh(SMFICTX *ctx)
{
	struct msg *m = smfi_getpriv(ctx);

	if (m == NULL)
		return SMFIS_CONTINUE;
	if (reserve(m, 2)) {
		memcpy(m->buf + m->len, "\r\n", 2);
		m->len += 2;
	}
	return m->eoh_rc;
}

/* Past the limit the message goes unscanned; the rest of its body is dropped. */
static sfsistat scan_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct msg *m = smfi_getpriv(ctx);

	if (m == NULL)
		return SMFIS_CONTINUE;
	if (reserve(m, len)) {
		memcpy(m->buf + m->len, chunk, len);
		m->len += len;
	}
	return m->body_rc;
}

static int send_all(int fd, struct iovec *iov, int count)
{
	struct msghdr mh;

	memset(&mh, 0, sizeof(mh));
	while (count > 0) {
		ssize_t sent;

		mh.msg_iov = iov;
		mh.msg_iovlen = count;
		sent = sendmsg(fd, &mh, MSG_NOSIGNAL); /* a reset spamd must not SIGPIPE us */
		if (sent < 0)
			return -1;
		while (count > 0 && (size_t)sent >= iov->iov_len) {
			sent -= iov->iov_len;
			iov++;
			count--;
		}
		if (count > 0) {
			iov->iov_base = (char *)iov->iov_base + sent;
			iov->iov_len -= sent;
		}
	}
	return 0;
}

/* REPORT the message to spamd; on success fill `status` ("Yes, score=S required=T"). */
static int spamd_report(const struct msg *m, char *status, size_t size)
{
	char head[64], reply[4096], sink[16384], *line, *end, flag[8], score[32], required[32];
	struct timeval tv = { SPAMD_TIMEOUT, 0 };
	struct iovec iov[2];
	size_t got = 0;
	ssize_t n;
	int fd, ok = -1;

	fd = socket(spamd_addr->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, spamd_addr->ai_addr, spamd_addr->ai_addrlen) < 0)
		goto out;
	iov[0].iov_base = head;
	iov[0].iov_len = (size_t)snprintf(head, sizeof(head),
					  "REPORT SPAMC/1.5\r\nContent-length: %zu\r\n\r\n", m->len);
	iov[1].iov_base = m->buf;
	iov[1].iov_len = m->len;
	if (send_all(fd, iov, 2) < 0 || shutdown(fd, SHUT_WR) < 0)
		goto out;
	/* Keep the start of the reply (status line and headers), drain the report to EOF. */
	while ((n = read(fd, got < sizeof(reply) - 1 ? reply + got : sink,
			 got < sizeof(reply) - 1 ? sizeof(reply) - 1 - got : sizeof(sink))) > 0)
		if (got < sizeof(reply) - 1)
			got += (size_t)n;
	if (n < 0)
		goto out;
	reply[got] = '\0';
	if (strncmp(reply, "SPAMD/1.", 8) != 0 || (line = strchr(reply, ' ')) == NULL ||
	    strncmp(line, " 0 ", 3) != 0)
		goto out;
	end = strstr(reply, "\r\n\r\n");
	line = strstr(reply, "\r\nSpam: ");
	if (end == NULL || line == NULL || line > end)
		goto out;
	if (sscanf(line + 8, "%7s ; %31s / %31[^\r]", flag, score, required) != 3)
		goto out;
	snprintf(status, size, "%s, score=%s required=%s",
		 strcmp(flag, "True") == 0 || strcmp(flag, "Yes") == 0 ? "Yes" : "No", score,
		 required);
	ok = 0;
out:
	close(fd);
	return ok;
}

static sfsistat scan_eom(SMFICTX *ctx)
{
	struct msg *m = smfi_getpriv(ctx);
	char status[128];

	if (m == NULL)
		return SMFIS_CONTINUE;
	if (!m->oversize && spamd_report(m, status, sizeof(status)) == 0)
		smfi_addheader(ctx, "X-Spam-Status", status);
	reset(m); /* no MAIL callback: the next message starts here (or at abort) */
	return SMFIS_CONTINUE;
}

static sfsistat scan_abort(SMFICTX *ctx)
{
	struct msg *m = smfi_getpriv(ctx);

	if (m != NULL)
		reset(m);
	return SMFIS_CONTINUE;
}

static sfsistat scan_close(SMFICTX *ctx)
{
	struct msg *m = smfi_getpriv(ctx);

	if (m != NULL) {
		free(m->buf);
		free(m);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

static struct smfiDesc scan_desc = {
	"nullscan",      /* filter name */
	SMFI_VERSION,    /* version code */
	WANT_ACTIONS,    /* flags */
	NULL,            /* connect */
	NULL,            /* helo */
	NULL,            /* envfrom */
	NULL,            /* envrcpt */
	scan_header,     /* header */
	scan_eoh,        /* eoh */
	scan_body,       /* body */
	scan_eom,        /* eom */
	scan_abort,      /* abort */
	scan_close,      /* close */
	NULL,            /* unknown */
	NULL,            /* data */
	scan_negotiate,  /* negotiate */
};

int main(int argc, char **argv)
{
	struct addrinfo hints;
	int err;

	if (argc != 4) {
		fprintf(stderr, "usage: %s SOCKET SPAMD_HOST SPAMD_PORT "
				"(e.g. inet:9999@127.0.0.1 127.0.0.1 783)\n", argv[0]);
		return 64;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	err = getaddrinfo(argv[2], argv[3], &hints, &spamd_addr);
	if (err != 0) {
		fprintf(stderr, "spamd address %s:%s: %s\n", argv[2], argv[3], gai_strerror(err));
		return 1;
	}
	if (smfi_setconn(argv[1]) == MI_FAILURE) {
		fprintf(stderr, "smfi_setconn failed\n");
		return 1;
	}
	if (smfi_setbacklog(128) == MI_FAILURE || smfi_register(scan_desc) == MI_FAILURE) {
		fprintf(stderr, "smfi_register failed\n");
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
