# ccb for zsh: source it from ~/.zshrc (after compinit)
#   source /path/to/ccb/shell/ccb.zsh
#
# `cc` runs ccb in interactive shells only: scripts and builds keep the C compiler.
# Set CCB_ALIAS_CLAUDE=1 before sourcing to make `claude` run through ccb too.
if [[ -o interactive ]] && (( $+commands[ccb] )); then
    alias cc=ccb
    if [[ "${CCB_ALIAS_CLAUDE:-0}" == 1 ]]; then
        alias claude=ccb
    fi
    (( $+functions[compdef] )) && source <(ccb completions zsh)
fi
