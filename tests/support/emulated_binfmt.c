/* The emulated phone's "binfmt_misc": run aarch64 ELF executables through qemu-aarch64.
 *
 * binfmt_misc cannot be registered here (no privileges over the host kernel's table), so every
 * process of the emulated phone preloads this library (LD_PRELOAD, set by tests/support/
 * adb_sandbox.py). It interposes execve/execv/execvp/execvpe: when the file to execute is an
 * aarch64 ELF, it executes
 *     qemu-aarch64 [-cpu $STAR_EMU_QEMU_CPU] -0 <argv0> -U LD_PRELOAD <file> <args...>
 * instead, in the same process (exec keeps the pid, as the agent's bench.pid expects). Reading
 * the file (sha256sum, pull) sees the real bytes. The qemu process names itself after the guest
 * program (PR_SET_NAME in the constructor below), so /proc/<pid>/status says "llama-bench", as a
 * phone's kernel would. Any other file is executed unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef STAR_QEMU
#define STAR_QEMU "/usr/bin/qemu-aarch64"
#endif
#define COMM_VAR "STAR_EMU_COMM="

extern char **environ;
typedef int (*execve_fn)(const char *, char *const[], char *const[]);

__attribute__((constructor)) static void star_name_guest(void) {
    const char *comm = getenv("STAR_EMU_COMM");
    if (comm != NULL) {
        prctl(PR_SET_NAME, comm, 0, 0, 0);
        unsetenv("STAR_EMU_COMM");
    }
}

static int is_aarch64_elf(const char *path) {
    unsigned char h[20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, h, sizeof h);
    close(fd);
    return n == (ssize_t)sizeof h && memcmp(h, "\177ELF", 4) == 0 && h[4] == 2 && h[5] == 1 &&
           (h[18] | (h[19] << 8)) == 183; /* EM_AARCH64 */
}

static int real_execve(const char *path, char *const argv[], char *const envp[]) {
    execve_fn next = (execve_fn)dlsym(RTLD_NEXT, "execve");
    return next(path, argv, envp);
}

int execve(const char *path, char *const argv[], char *const envp[]) {
    if (path == NULL || !is_aarch64_elf(path))
        return real_execve(path, argv, envp);
    const char *qemu = getenv("STAR_EMU_QEMU");
    if (qemu == NULL || *qemu == '\0')
        qemu = STAR_QEMU;
    if (access(qemu, X_OK) != 0) {
        fprintf(stderr, "%s: aarch64 binary, and %s is missing (apt-get install qemu-user)\n",
                path, qemu);
        errno = ENOEXEC;
        return -1;
    }
    size_t argc = 0, envc = 0;
    while (argv != NULL && argv[argc] != NULL)
        argc++;
    while (envp != NULL && envp[envc] != NULL)
        envc++;
    const char *cpu = getenv("STAR_EMU_QEMU_CPU");
    char **args = calloc(argc + 9, sizeof *args);
    char **env = calloc(envc + 2, sizeof *env);
    if (args == NULL || env == NULL) {
        errno = ENOMEM;
        return -1;
    }
    size_t a = 0;
    args[a++] = (char *)qemu;
    if (cpu != NULL && *cpu != '\0') {
        args[a++] = "-cpu";
        args[a++] = (char *)cpu;
    }
    args[a++] = "-0";
    args[a++] = argc > 0 ? argv[0] : (char *)path;
    args[a++] = "-U";
    args[a++] = "LD_PRELOAD";
    args[a++] = (char *)path;
    for (size_t i = 1; i < argc; i++)
        args[a++] = argv[i];
    args[a] = NULL;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *comm = malloc(strlen(COMM_VAR) + strlen(base) + 1);
    if (comm == NULL) {
        errno = ENOMEM;
        return -1;
    }
    strcpy(comm, COMM_VAR);
    strcat(comm, base);
    size_t e = 0;
    env[e++] = comm;
    for (size_t i = 0; i < envc; i++)
        env[e++] = envp[i];
    env[e] = NULL;
    int rc = real_execve(qemu, args, env);
    int saved = errno;
    free(args);
    free(env);
    free(comm);
    errno = saved;
    return rc;
}

int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvpe(const char *file, char *const argv[], char *const envp[]) {
    if (file == NULL || *file == '\0') {
        errno = ENOENT;
        return -1;
    }
    if (strchr(file, '/') != NULL)
        return execve(file, argv, envp);
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/bin:/usr/bin";
    int denied = 0;
    char candidate[PATH_MAX];
    const char *p = path;
    while (1) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int n = snprintf(candidate, sizeof candidate, "%.*s/%s", (int)len, len ? p : ".", file);
        if (n > 0 && (size_t)n < sizeof candidate) {
            execve(candidate, argv, envp);
            if (errno == EACCES)
                denied = 1;
            else if (errno == ENOEXEC) { /* a script without #!: run it with the shell */
                size_t argc = 0;
                while (argv[argc] != NULL)
                    argc++;
                char **sh = calloc(argc + 2, sizeof *sh);
                if (sh != NULL) {
                    sh[0] = "/bin/sh";
                    sh[1] = candidate;
                    for (size_t i = 1; i < argc; i++)
                        sh[i + 1] = argv[i];
                    real_execve("/bin/sh", sh, envp);
                    free(sh);
                }
                return -1;
            } else if (errno != ENOENT && errno != ENOTDIR)
                return -1;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    errno = denied ? EACCES : ENOENT;
    return -1;
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }
