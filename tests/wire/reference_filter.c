/* The reference filter of the libmilter differential suite (tests/wire/): a minimal milter
 * on Debian's libmilter that asks the MTA for what spambridge asks and answers as
 * spambridge does with spamd answering ham, so that whatever differs on the wire between
 * the two is the protocol handling, not the policy.
 *
 * Usage: reference_filter SOCKET MODE [STAGE:NAMES ...]
 *        reference_filter --source-hash
 *   SOCKET  libmilter's syntax (unix:/path, inet:PORT@127.0.0.1)
 *   MODE    "reply": every step answered (spambridge -milter-no-reply);
 *           "nr": no reply to any step before end of message (spambridge's
 *           +milter-no-reply with its default options)
 *   STAGE:NAMES  a macro list to request (smfi_setsymlist), e.g. "0:j {daemon_name}"
 *
 * Built by tests/support/libmilter_reference.py with -DSOURCE_HASH="<sha256 of this file>";
 * --source-hash prints it, which is how a cached binary is checked against this source.
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SOURCE_HASH
#define SOURCE_HASH "unknown"
#endif

#define MAX_LISTS 7

static int no_reply;            /* MODE "nr" */
static int list_count;
static int list_stage[MAX_LISTS];
static char *list_names[MAX_LISTS];

/* What spambridge requests (session.wanted() with default options): the actions, and the
 * protocol bits, each only if the MTA offers it; the NR bits only in "nr" mode. */
#define WANT_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS)
#define WANT_PROTOCOL (SMFIP_NOUNKNOWN | SMFIP_HDR_LEADSPC)
#define WANT_NO_REPLY (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | \
		       SMFIP_NR_DATA | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY)

static sfsistat step(void)
{
	return no_reply ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat ref_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			      unsigned long f2, unsigned long f3, unsigned long *pf0,
			      unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	int i;
	unsigned long protocol = WANT_PROTOCOL | (no_reply ? WANT_NO_REPLY : 0);

	(void) f2;
	(void) f3;
	*pf0 = WANT_ACTIONS & f0;
	/* f1 also carries the NR bits libmilter can fake; it drops the ones the MTA lacks
	 * from its reply and answers those steps itself, as spambridge never asks for them */
	*pf1 = protocol & f1;
	*pf2 = 0;
	*pf3 = 0;
	if (list_count > 0 && (f0 & SMFIF_SETSYMLIST)) {
		for (i = 0; i < list_count; i++)
			if (smfi_setsymlist(ctx, list_stage[i], list_names[i]) != MI_SUCCESS)
				return SMFIS_REJECT;
		*pf0 |= SMFIF_SETSYMLIST;
	}
	return SMFIS_CONTINUE;
}

static sfsistat ref_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
	(void) ctx;
	(void) host;
	(void) addr;
	return step();
}

static sfsistat ref_helo(SMFICTX *ctx, char *name)
{
	(void) ctx;
	(void) name;
	return step();
}

static sfsistat ref_envelope(SMFICTX *ctx, char **argv)
{
	(void) ctx;
	(void) argv;
	return step();
}

static sfsistat ref_data(SMFICTX *ctx)
{
	(void) ctx;
	return step();
}

static sfsistat ref_header(SMFICTX *ctx, char *name, char *value)
{
	(void) ctx;
	(void) name;
	(void) value;
	return step();
}

static sfsistat ref_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
	(void) ctx;
	(void) data;
	(void) len;
	return step();
}

/* spambridge with a ham verdict adds its X-Spam-* headers and continues; so does this.
 * Without the add-headers action (the MTA did not offer it) spambridge drops its edits and
 * still continues, hence the ignored failure. */
static sfsistat ref_eom(SMFICTX *ctx)
{
	(void) smfi_addheader(ctx, "X-Spam-Status", " No, reference filter");
	return SMFIS_CONTINUE;
}

static sfsistat ref_abort(SMFICTX *ctx)
{
	(void) ctx;
	return SMFIS_CONTINUE;
}

static sfsistat ref_close(SMFICTX *ctx)
{
	(void) ctx;
	return SMFIS_CONTINUE;
}

static struct smfiDesc ref_desc = {
	"reference_filter", /* filter name */
	SMFI_VERSION,       /* version code */
	WANT_ACTIONS,       /* flags */
	ref_connect,        /* connect */
	ref_helo,           /* helo */
	ref_envelope,       /* envfrom */
	ref_envelope,       /* envrcpt */
	ref_header,         /* header */
	ref_data,           /* eoh (same signature as data) */
	ref_body,           /* body */
	ref_eom,            /* eom */
	ref_abort,          /* abort */
	ref_close,          /* close */
	NULL,               /* unknown: not used, so SMFIP_NOUNKNOWN, as spambridge */
	ref_data,           /* data */
	ref_negotiate,      /* negotiate */
};

int main(int argc, char **argv)
{
	int i;

	if (argc == 2 && strcmp(argv[1], "--source-hash") == 0) {
		printf("%s\n", SOURCE_HASH);
		return 0;
	}
	if (argc < 3 || argc - 3 > MAX_LISTS ||
	    (strcmp(argv[2], "reply") != 0 && strcmp(argv[2], "nr") != 0)) {
		fprintf(stderr, "usage: %s SOCKET reply|nr [STAGE:NAMES ...]\n", argv[0]);
		return 64;
	}
	no_reply = strcmp(argv[2], "nr") == 0;
	for (i = 3; i < argc; i++) {
		char *colon = strchr(argv[i], ':');

		if (colon == NULL) {
			fprintf(stderr, "bad macro list %s\n", argv[i]);
			return 64;
		}
		list_stage[list_count] = atoi(argv[i]);
		list_names[list_count] = colon + 1;
		list_count++;
	}
	if (smfi_setconn(argv[1]) == MI_FAILURE) {
		fprintf(stderr, "smfi_setconn failed\n");
		return 1;
	}
	if (smfi_setbacklog(128) == MI_FAILURE || smfi_register(ref_desc) == MI_FAILURE) {
		fprintf(stderr, "smfi_register failed\n");
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
