# ccb for bash: source it from ~/.bashrc
#   source /path/to/ccb/shell/ccb.bash
#
# `cc` runs ccb in interactive shells only: scripts and builds keep the C compiler.
# Set CCB_ALIAS_CLAUDE=1 before sourcing to make `claude` run through ccb too.
if [[ $- == *i* ]] && command -v ccb >/dev/null 2>&1; then
    alias cc=ccb
    if [[ "${CCB_ALIAS_CLAUDE:-0}" == 1 ]]; then
        alias claude=ccb
    fi
    # Completions, generated from ccb's own definition.
    source <(ccb completions bash)
fi
