# ccb for fish: copy to ~/.config/fish/conf.d/ccb.fish, or source it from config.fish
#
# `cc` runs ccb in interactive shells only: scripts and builds keep the C compiler.
# Set CCB_ALIAS_CLAUDE=1 (e.g. `set -U CCB_ALIAS_CLAUDE 1`) to make `claude` run through ccb too.
if status is-interactive; and command -q ccb
    alias cc=ccb
    if test "$CCB_ALIAS_CLAUDE" = 1
        alias claude=ccb
    end
    ccb completions fish | source
end
