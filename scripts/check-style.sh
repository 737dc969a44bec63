#!/bin/bash
# check-style.sh [FILE...]: the mechanical part of the coding style, the
# part that make test enforces (tests/style.t).  It prints one line,
# FILE:LINE: what, for each line that breaks a rule, and exits 1 if there
# is any (0 when all is well).  With no FILE it checks
# every tracked .c, .h, .sh, .t and .mk file and every Makefile.
#
# The rules:
#   - no CR (DOS line ends), no trailing blanks, and the file ends with a
#     newline: every file checked;
#   - no tab characters: C sources (.c, .h) and shell (.sh, .t); a
#     Makefile or .mk file needs tabs for its recipes and may have them;
#   - lines of at most 80 columns in vmm/ and devices/ C files, and of at
#     most 100 in block/ (the engine and its tools, block/img, block/io),
#     tests/unit/ and tests/fuzz/ C files.  devices/vga-font.c, a
#     generated font table, is exempt.  firmware/'s guest code has no
#     limit.
#
# A FILE of any other kind gets the rules that every file gets.
#
# The rest of the style is for people, not for this script.
# .clang-format (vmm/, devices/) and block/.clang-format (block/, and
# tests/.clang-format for tests/unit and tests/fuzz) describe it for
# editors and for clang-format on the lines a change touches, never on
# whole files:
#   - 4 spaces an indent level; a function's opening brace on a line of
#     its own, every other brace at the end of its line; `int *p`;
#     `switch` and its `case` labels at the same indent;
#   - vmm/, devices/ (kernel-like): snake_case, `struct foo` and no
#     typedef for a struct, union or enum (a function pointer type may be
#     one, named foo_fn), declarations at the top of a block as a rule;
#   - block/ (QEMU-like): CamelCase typedefs for the block layer's types
#     (BlockDriverState, BlockDriver, Qcow2State, BlockInfo, ...),
#     the names QEMU's readers know, and declarations mixed with code.
#     Those typedefs are block/'s API: devices/ code that opens or reads
#     an image names them, but defines none of its own.
cd "$(dirname "$0")/.." || exit 2
root=$PWD

if [ $# -eq 0 ]; then
    if git rev-parse --git-dir >/dev/null 2>&1; then
        mapfile -d '' -t files < <(git ls-files -z -- '*.c' '*.h' '*.sh' \
                                       '*.t' '*.mk' Makefile '*/Makefile')
    else
        # not a git checkout (a tarball): every such file outside the
        # build directories
        mapfile -t files < <(find . \( -path ./.git -o -path './build*' \) \
            -prune -o -type f \
            \( -name '*.[ch]' -o -name '*.sh' -o -name '*.t' \
               -o -name '*.mk' -o -name Makefile \) -print | sed 's|^\./||')
    fi
    shown=("${files[@]}")
else
    # The paths as given (relative to the caller's directory) are what
    # the report shows; the rules go by the path inside the tree.
    files=()
    shown=()
    for f in "$@"; do
        case $f in
        /*) abs=$f ;;
        *) abs=$OLDPWD/$f ;;
        esac
        rel=$(realpath -m --relative-to="$root" "$abs")
        files+=("$rel")
        shown+=("$f")
    done
fi

[ ${#files[@]} -gt 0 ] || exit 0

# One perl for every file: it reads each one whole, so that it sees a
# missing final newline and counts columns in characters, not bytes.
for i in "${!files[@]}"; do
    printf '%s\0%s\0' "${files[$i]}" "${shown[$i]}"
done | perl -0 -e '
use strict;
use warnings;
my $named = $ARGV[0];
my $bad = 0;
sub report { print "$_[0]:$_[1]: $_[2]\n"; $bad = 1; }
while (defined(my $rel = <STDIN>)) {
    chomp $rel;
    my $shown = <STDIN>;
    chomp $shown;
    next if $rel eq "";
    # C and shell may not have tabs; Makefiles and the rest may
    my $c = $rel =~ /\.[ch]$/;
    my $notab = $c || $rel =~ /\.(sh|t)$/;
    my $max = 0;
    if ($c && $rel ne "devices/vga-font.c") {
        $max = 80 if $rel =~ m{^(vmm|devices)/};
        $max = 100 if $rel =~ m{^(block|tests/unit|tests/fuzz)/};
    }
    if (-e $rel && !-f $rel) {
        print "$shown: not a regular file\n";
        $bad = 1;
        next;
    }
    my $fh;
    unless (open($fh, "<", $rel)) {
        # A tracked file deleted in the work tree is not there to check;
        # a file named on the command line must be.
        if ($named || -e $rel) {
            print "$shown: cannot read: $!\n";
            $bad = 1;
        }
        next;
    }
    local $/;
    my $text = <$fh>;
    close $fh;
    next if $text eq "";
    report($shown, 1, "binary file (has NUL bytes)"), next
        if $text =~ /\0/;
    my $utf8 = utf8::decode(my $chars = $text);
    my @lines = split /\n/, ($utf8 ? $chars : $text), -1;
    my $last = pop @lines;
    my $n = 0;
    for my $l (@lines, $last eq "" ? () : ($last)) {
        $n++;
        report($shown, $n, "carriage return (DOS line end)") if $l =~ /\r/;
        (my $t = $l) =~ s/\r$//;
        report($shown, $n, "trailing whitespace") if $t =~ /[ \t]$/;
        report($shown, $n, "tab character") if $notab && $t =~ /\t/;
        report($shown, $n, length($t) . " columns (at most $max here)")
            if $max && length($t) > $max;
    }
    report($shown, $n, "no newline at end of file") if $last ne "";
}
exit $bad;
' "$#"
