/* wc-tool: count lines, words and bytes, like a small wc(1).
 *
 * Usage: wc-tool [-l] [-w] [-c] [FILE...]   (no FILE, or "-", reads stdin)
 * Exit codes: 0 on success, 1 if a file could not be read, 2 on bad usage.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

struct counts {
    unsigned long long lines, words, bytes;
};

static int show_lines, show_words, show_bytes;

static void usage(FILE *out)
{
    fputs("Usage: wc-tool [OPTION]... [FILE]...\n"
          "Print line, word and byte counts for each FILE, and a total line if\n"
          "more than one FILE is given. With no FILE, or when FILE is -, read\n"
          "standard input. Options come before file names.\n"
          "\n"
          "  -l, --lines   print the line counts\n"
          "  -w, --words   print the word counts\n"
          "  -c, --bytes   print the byte counts\n"
          "  -h, --help    show this help and exit\n"
          "\n"
          "Exit status: 0 on success, 1 if a file could not be read, 2 on bad usage.\n",
          out);
}

static int count_stream(FILE *in, struct counts *c)
{
    unsigned char buf[65536];
    size_t n;
    int in_word = 0;

    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        c->bytes += n;
        for (size_t i = 0; i < n; i++) {
            if (buf[i] == '\n')
                c->lines++;
            if (isspace(buf[i])) {
                in_word = 0;
            } else if (!in_word) {
                in_word = 1;
                c->words++;
            }
        }
    }
    return ferror(in) ? -1 : 0;
}

static void print_counts(const struct counts *c, const char *name)
{
    const char *sep = "";
    if (show_lines) {
        printf("%s%7llu", sep, c->lines);
        sep = " ";
    }
    if (show_words) {
        printf("%s%7llu", sep, c->words);
        sep = " ";
    }
    if (show_bytes)
        printf("%s%7llu", sep, c->bytes);
    if (name)
        printf(" %s", name);
    putchar('\n');
}

int main(int argc, char **argv)
{
    int first_file = argc, status = 0, options_done = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (first_file == argc)
                first_file = i;
            continue;
        }
        if (first_file != argc)
            continue; /* everything after the first file name is a file name */
        if (strcmp(arg, "--") == 0) {
            options_done = 1;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(arg, "--lines") == 0) {
            show_lines = 1;
        } else if (strcmp(arg, "--words") == 0) {
            show_words = 1;
        } else if (strcmp(arg, "--bytes") == 0) {
            show_bytes = 1;
        } else if (arg[1] != '-') {
            for (const char *p = arg + 1; *p; p++) {
                switch (*p) {
                case 'l': show_lines = 1; break;
                case 'w': show_words = 1; break;
                case 'c': show_bytes = 1; break;
                case 'h': usage(stdout); return 0;
                default:
                    fprintf(stderr, "wc-tool: unknown option -%c\n", *p);
                    usage(stderr);
                    return 2;
                }
            }
        } else {
            fprintf(stderr, "wc-tool: unknown option %s\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (!show_lines && !show_words && !show_bytes)
        show_lines = show_words = show_bytes = 1;

    if (first_file == argc) {
        struct counts c = {0, 0, 0};
        if (count_stream(stdin, &c) != 0) {
            fprintf(stderr, "wc-tool: standard input: %s\n", strerror(errno));
            return 1;
        }
        print_counts(&c, NULL);
        return fflush(stdout) == 0 ? 0 : 1;
    }

    struct counts total = {0, 0, 0};
    for (int i = first_file; i < argc; i++) {
        const char *name = argv[i];
        struct counts c = {0, 0, 0};
        int from_stdin = strcmp(name, "-") == 0;
        FILE *in = from_stdin ? stdin : fopen(name, "rb");
        if (!in) {
            fprintf(stderr, "wc-tool: %s: %s\n", name, strerror(errno));
            status = 1;
            continue;
        }
        if (count_stream(in, &c) != 0) {
            fprintf(stderr, "wc-tool: %s: %s\n", name, strerror(errno));
            status = 1;
        } else {
            print_counts(&c, name);
            total.lines += c.lines;
            total.words += c.words;
            total.bytes += c.bytes;
        }
        if (!from_stdin)
            fclose(in);
    }
    if (argc - first_file > 1)
        print_counts(&total, "total");
    if (fflush(stdout) != 0)
        status = 1;
    return status;
}
