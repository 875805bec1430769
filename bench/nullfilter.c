/* A do-nothing milter on libmilter: accepts everything and adds one header at end of
 * message. It is the floor for the milter protocol cost in the benchmarks.
 * Build: cc -O2 -o nullfilter nullfilter.c -lmilter -lpthread
 * Run:   nullfilter inet:PORT@127.0.0.1
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sfsistat null_eom(SMFICTX *ctx)
{
	if (smfi_addheader(ctx, "X-Null-Filter", "yes") != MI_SUCCESS)
		return SMFIS_TEMPFAIL;
	return SMFIS_CONTINUE;
}

static struct smfiDesc null_desc = {
	"nullfilter",    /* filter name */
	SMFI_VERSION,    /* version code */
	SMFIF_ADDHDRS,   /* flags */
	NULL,            /* connect */
	NULL,            /* helo */
	NULL,            /* envfrom */
	NULL,            /* envrcpt */
	NULL,            /* header */
	NULL,            /* eoh */
	NULL,            /* body */
	null_eom,        /* eom */
	NULL,            /* abort */
	NULL,            /* close */
	NULL,            /* unknown */
	NULL,            /* data */
	NULL,            /* negotiate */
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SOCKET (e.g. inet:9999@127.0.0.1)\n", argv[0]);
		return 64;
	}
	if (smfi_setconn(argv[1]) == MI_FAILURE) {
		fprintf(stderr, "smfi_setconn failed\n");
		return 1;
	}
	if (smfi_setbacklog(128) == MI_FAILURE || smfi_register(null_desc) == MI_FAILURE) {
		fprintf(stderr, "smfi_register failed\n");
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
