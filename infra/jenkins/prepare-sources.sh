#!/usr/bin/env bash
# prepare-sources.sh <sources-url> <workdir> [<build-arg-name>...]
#
# Downloads the sources of a build (following the shuttle's redirect to S3), extracts a tar.gz,
# tar or zip archive (recognised by content) into <workdir>, flattens a single top-level folder,
# and adds `ARG <name>` after every FROM instruction of <workdir>/Dockerfile for each build
# argument name. Logs on stdout, never the link's query string (its signature) nor userinfo.
# On failure: one line `[prepare] error: <reason>` on stderr, exit 1.
#
# Needs bash, curl, tar, gzip, unzip, awk, od, find (no python).
set -euo pipefail

log() { printf '[prepare] %s\n' "$*"; }

die() {
    local msg="$*"
    msg=${msg//$'\r'/ }
    msg=${msg//$'\n'/ }
    printf '[prepare] error: %s\n' "$msg" >&2
    exit 1
}

# Anything failing that is not handled below still ends with one `[prepare] error:` line.
trap 'printf "[prepare] error: unexpected failure (exit code %s) at line %s\n" "$?" "$LINENO" >&2; exit 1' ERR

usage="usage: prepare-sources.sh <sources-url> <workdir> [<build-arg-name>...]"
[ "$#" -ge 2 ] || die "$usage"
url=$1
workdir=$2
shift 2
[ -n "$url" ] || die "the sources URL is empty"
[ -n "$workdir" ] || die "the workdir is empty"

# --- build argument names --------------------------------------------------------------------
arg_names=()
for name in "$@"; do
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "invalid build argument name '$name' (expected [A-Za-z_][A-Za-z0-9_]*)"
    dup=0
    for seen in ${arg_names[@]+"${arg_names[@]}"}; do
        [ "$seen" != "$name" ] || dup=1
    done
    [ "$dup" -eq 1 ] || arg_names+=("$name")
done

# --- the URL, as it may be shown: scheme://host/path (no userinfo, no query, no fragment) -----
case "$url" in
    http://* | https://* | HTTP://* | HTTPS://*) ;;
    *) die "the sources URL must be an http or https URL" ;;
esac
scheme=${url%%://*}
rest=${url#*://}
authority=${rest%%[/?#]*}
path=${rest#"$authority"}
path=${path%%[?#]*}
host=${authority##*@}
shown_url="$scheme://$host${path:-/}"

# --- the workdir: absent or empty ---------------------------------------------------------------
if [ -e "$workdir" ] || [ -L "$workdir" ]; then
    if [ ! -d "$workdir" ] || [ -L "$workdir" ]; then
        die "workdir '$workdir' exists and is not a directory"
    fi
    [ -z "$(ls -A -- "$workdir")" ] || die "workdir '$workdir' is not empty"
else
    mkdir -p -- "$workdir" || die "cannot create workdir '$workdir'"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/prepare-sources.XXXXXX") || die "cannot create a temporary directory"
trap 'rm -rf -- "$tmp"' EXIT
archive=$tmp/sources
errf=$tmp/stderr

# --- download -------------------------------------------------------------------------------------
log "downloading $shown_url"
# -q first: ignore any ~/.curlrc (it could turn on verbose output, which would print the URL).
status=$(curl -q -fsSL --max-redirs 5 --retry 2 --proto '=http,https' --proto-redir '=http,https' \
    --connect-timeout 30 -w '%{http_code}' -o "$archive" -- "$url" 2>"$errf") || {
    rc=$?
    if [[ ${status:-} =~ ^[0-9]+$ ]] && [ "$status" -ge 400 ]; then
        die "download failed: HTTP $status"
    fi
    # curl's messages carry no URL, but strip anything that looks like a query or userinfo anyway.
    reason=$(head -n 1 "$errf" | sed -e 's/?[^[:space:]]*//g' -e 's#//[^/@[:space:]]*@#//#g')
    die "download failed: ${reason:-curl exit code $rc}"
}
size=$(wc -c <"$archive" | tr -d ' ')
log "downloaded $size bytes"

# --- recognise the archive by content ------------------------------------------------------------
# The first 262 bytes in hex (fewer for a short file): 2 characters a byte.
head_hex=$(head -c 262 "$archive" | od -An -v -tx1 | tr -d ' \n')
magic=${head_hex:0:8}
ustar=${head_hex:514:10}
case "$magic" in
    1f8b*) kind=tar.gz ;;
    504b0304) kind=zip ;;
    *)
        if [ "$ustar" = "7573746172" ]; then # "ustar"
            kind=tar
        else
            die "sources are not a tar.gz, tar or zip archive"
        fi
        ;;
esac

# --- list the entries and refuse path traversal ----------------------------------------------------
names=$tmp/names
case "$kind" in
    tar.gz) tar -tzf "$archive" >"$names" 2>"$errf" || die "cannot read the tar.gz archive: $(tail -n 1 "$errf")" ;;
    tar) tar -tf "$archive" >"$names" 2>"$errf" || die "cannot read the tar archive: $(tail -n 1 "$errf")" ;;
    zip) unzip -Z1 "$archive" >"$names" 2>"$errf" || die "cannot read the zip archive: $(tail -n 1 "$errf")" ;;
esac
while IFS= read -r entry || [ -n "$entry" ]; do
    normalised=$entry
    if [ "$kind" = zip ]; then
        normalised=${normalised//\\//} # zip files made on Windows may use backslashes
    fi
    case "$normalised" in
        /* | [A-Za-z]:*) die "unsafe path in archive: '$entry' (absolute paths are refused)" ;;
    esac
    case "/$normalised/" in
        */../*) die "unsafe path in archive: '$entry' ('..' components are refused)" ;;
    esac
done <"$names"

# --- extract ----------------------------------------------------------------------------------------
case "$kind" in
    tar.gz) tar -xzf "$archive" -C "$workdir" --no-same-owner 2>"$errf" || die "cannot extract the tar.gz archive: $(tail -n 1 "$errf")" ;;
    tar) tar -xf "$archive" -C "$workdir" --no-same-owner 2>"$errf" || die "cannot extract the tar archive: $(tail -n 1 "$errf")" ;;
    zip)
        rc=0
        unzip -q -o "$archive" -d "$workdir" </dev/null >"$errf" 2>&1 || rc=$?
        # 1 = warnings only (e.g. extra bytes before the archive): the files are there.
        [ "$rc" -le 1 ] || die "cannot extract the zip archive: $(tail -n 1 "$errf")"
        ;;
esac
files=$(find "$workdir" ! -type d -print0 | tr -dc '\000' | wc -c | tr -d ' ')
log "extracted $kind ($files files)"

# --- flatten a single top-level folder --------------------------------------------------------------
shopt -s dotglob nullglob
top=()
for entry in "$workdir"/*; do
    case "${entry##*/}" in
        __MACOSX | .DS_Store) ;;
        *) top+=("$entry") ;;
    esac
done
if [ "${#top[@]}" -eq 1 ] && [ -d "${top[0]}" ] && [ ! -L "${top[0]}" ]; then
    folder=${top[0]##*/}
    rm -rf -- "$workdir/__MACOSX" "$workdir/.DS_Store"
    # Rename first: the folder may hold an entry with its own name.
    staging=$(mktemp -d "$workdir/.prepare-flatten.XXXXXX") || die "cannot flatten '$folder'"
    rmdir -- "$staging"
    mv -- "${top[0]}" "$staging" || die "cannot flatten '$folder'"
    moved=("$staging"/*)
    if [ "${#moved[@]}" -gt 0 ]; then
        mv -- "${moved[@]}" "$workdir"/ || die "cannot flatten '$folder'"
    fi
    rmdir -- "$staging" || die "cannot flatten '$folder'"
    log "flattened top-level folder '$folder'"
fi
shopt -u dotglob nullglob

# --- the Dockerfile ------------------------------------------------------------------------------------
dockerfile=$workdir/Dockerfile
if [ -L "$dockerfile" ]; then
    die "the Dockerfile is a symbolic link"
fi
[ -f "$dockerfile" ] || die "no Dockerfile at the top of the sources"

# Number of lines awk will see, and whether the file ends with a newline.
newlines=$(wc -l <"$dockerfile" | tr -d ' ')
if [ -z "$(tail -c 1 "$dockerfile")" ]; then final_nl=1; else final_nl=0; fi
if [ "$final_nl" -eq 1 ]; then last_nr=$newlines; else last_nr=$((newlines + 1)); fi

# Copies the Dockerfile byte for byte and adds `ARG <name>` after the last line of every FROM
# instruction. Follows the Dockerfile grammar far enough not to mistake anything for a FROM:
# parser directives (`# escape=`), comments, line continuations (also across comment and empty
# lines), and heredocs of RUN/COPY/ADD. Line endings of the file (LF or CRLF) are kept, and so is
# a missing final newline. Writes the number of FROM instructions to `countfile`.
# shellcheck disable=SC2016
awk_program='
function emit(text, eol) {
    if (pending) printf "%s", pending_eol
    printf "%s", text
    pending = 1
    pending_eol = eol
}
BEGIN {
    nargs = split(argnames, names, " ")
    cont_re = "\\\\[ \t]*$"
    directives = 1; in_cont = 0; is_from = 0; is_heredoc_kw = 0; hd_n = 0; hd_i = 0; nfrom = 0; crlf = 0
}
{
    line = $0
    eol = "\n"
    if (line ~ /\r$/) {
        line = substr(line, 1, length(line) - 1)
        eol = "\r\n"
        if (NR == 1) crlf = 1
    } else if (NR == lastnr && !finalnl && crlf) {
        eol = "\r\n"  # only written if an ARG line follows
    }
    emit(line, eol)

    s = line
    if (NR == 1) sub(/^\357\273\277/, "", s)

    # Inside heredoc bodies: look for the terminators only.
    if (hd_i <= hd_n && hd_n > 0) {
        t = s
        if (hd_strip[hd_i]) sub(/^\t+/, "", t)
        if (t == hd_word[hd_i]) hd_i++
        if (hd_i > hd_n) hd_n = 0
        next
    }

    # Parser directives, only at the very top.
    if (directives) {
        if (s ~ /^#[ \t]*[A-Za-z]+[ \t]*=/) {
            d = tolower(s)
            if (d ~ /^#[ \t]*escape[ \t]*=[ \t]*`/) cont_re = "`[ \t]*$"
            else if (d ~ /^#[ \t]*escape[ \t]*=/) cont_re = "\\\\[ \t]*$"
            next
        }
        directives = 0
    }

    if (s ~ /^[ \t]*#/) next  # a comment, also inside a continued instruction
    if (s ~ /^[ \t]*$/) next  # an empty line, also inside a continued instruction

    if (!in_cont) {
        is_from = (s ~ /^[ \t]*[Ff][Rr][Oo][Mm]([ \t]|$)/)
        is_heredoc_kw = (s ~ /^[ \t]*([Rr][Uu][Nn]|[Cc][Oo][Pp][Yy]|[Aa][Dd][Dd])([ \t]|$)/)
        instr = ""
    }
    instr = instr " " s
    if (s ~ cont_re) { in_cont = 1; next }
    in_cont = 0

    # The instruction ends on this line.
    if (is_from) {
        nfrom++
        for (i = 1; i <= nargs; i++) emit("ARG " names[i], eol)
    } else if (is_heredoc_kw) {
        hd_n = 0
        rest = instr
        while (match(rest, /[ \t][0-9]*<<-?["\047]?[^ \t<"\047]+["\047]?/)) {
            w = substr(rest, RSTART, RLENGTH)
            rest = substr(rest, RSTART + RLENGTH)
            sub(/^[ \t][0-9]*<</, "", w)
            strip = 0
            if (w ~ /^-/) { strip = 1; w = substr(w, 2) }
            gsub(/["\047]/, "", w)
            if (w == "") continue
            hd_n++
            hd_word[hd_n] = w
            hd_strip[hd_n] = strip
        }
        hd_i = 1
    }
}
END {
    if (pending && finalnl) printf "%s", pending_eol
    print nfrom > countfile
}
'

countfile=$tmp/from-count
rewritten=$tmp/Dockerfile
awk -v argnames="${arg_names[*]+"${arg_names[*]}"}" -v lastnr="$last_nr" -v finalnl="$final_nl" \
    -v countfile="$countfile" "$awk_program" "$dockerfile" >"$rewritten" ||
    die "cannot read the Dockerfile"
nfrom=$(cat "$countfile")
[ "$nfrom" -gt 0 ] || die "Dockerfile has no FROM instruction"

if [ "${#arg_names[@]}" -gt 0 ]; then
    cat "$rewritten" >"$dockerfile" || die "cannot write the Dockerfile"
    if [ "$nfrom" -eq 1 ]; then lines="line"; else lines="lines"; fi
    for name in "${arg_names[@]}"; do
        log "added ARG $name after $nfrom FROM $lines"
    done
else
    log "Dockerfile has $nfrom FROM instructions; no build arguments to add"
fi
log "sources ready in $workdir"
