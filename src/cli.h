/* cli: the commands that read what was captured (`restspy requests`,
 * `restspy show`). Each takes the arguments after its command name
 * (argv[0] is the command name) and returns the process exit code:
 * 0 success, 1 runtime failure (store cannot be opened, record not found),
 * 2 usage error (unknown flag, bad value); errors are one line on stderr. */
#ifndef RESTSPY_CLI_H
#define RESTSPY_CLI_H

int cli_requests(int argc, char **argv, char *const *envp);
int cli_show(int argc, char **argv, char *const *envp);

#endif
