# Lets the desktop find the launchers, icons and metainfo of apps installed with
# appbox. Install it as /etc/profile.d/appbox.sh, or source it from ~/.profile.
appbox_exports="${XDG_DATA_HOME:-$HOME/.local/share}/appbox/exports/share"
case ":${XDG_DATA_DIRS:-/usr/local/share:/usr/share}:" in
    *":$appbox_exports:"*) ;;
    *)
        XDG_DATA_DIRS="$appbox_exports:${XDG_DATA_DIRS:-/usr/local/share:/usr/share}"
        export XDG_DATA_DIRS
        ;;
esac
unset appbox_exports
