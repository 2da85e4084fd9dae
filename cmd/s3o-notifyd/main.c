/* s3o-notifyd: arguments, signals and wiring; the work is in lib/. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *out)
{
	fprintf(out, "usage: s3o-notifyd -c FILE [--check-config]\n"
		     "       s3o-notifyd --version | --help\n"
		     "\n"
		     "Delivers events from the PostgreSQL table notification_outbox as signed\n"
		     "CloudEvents webhooks to the endpoints configured in FILE (INI).\n"
		     "\n"
		     "  -c, --config FILE   configuration file (required)\n"
		     "      --check-config  validate FILE and exit 0 (valid) or 2 (invalid)\n"
		     "  -V, --version       print the version and exit\n"
		     "  -h, --help          print this help and exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"check-config", no_argument, NULL, 'k'},
					     {"version", no_argument, NULL, 'V'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'V':
			printf("s3o-notifyd %s\n", S3O_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	usage(stderr);
	return 2;
}
