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
    # Completions, generated from ccb's own definition; bash does not complete an alias as the
    # command it stands for (zsh and fish do), so the aliases get ccb's completion by name.
    source <(ccb completions bash)
    if __ccb_spec="$(complete -p ccb 2>/dev/null)"; then
        eval "${__ccb_spec% ccb} cc"
        if [[ "${CCB_ALIAS_CLAUDE:-0}" == 1 ]]; then
            eval "${__ccb_spec% ccb} claude"
        fi
    fi
    unset __ccb_spec
fi
