# Source me: the environment of bopask_msgs' colcon install prefix, and nothing else of install/
# (bopask_ros and bopask_vlm are installed editable by the Makefile). What colcon's
# install/bopask_msgs/share/bopask_msgs/package.bash sets, written out so that it also works from
# `make` and from a shell without colcon's scripts:
#   AMENT_PREFIX_PATH  the ament index (rclpy finds the type support libraries through it)
#   LD_LIBRARY_PATH    the generated C libraries (the Python extensions carry no RPATH)
#   PYTHONPATH         the generated Python package
#   source scripts/ros_paths.sh [INSTALL_BASE]      (default: install/ of this checkout)
_bopask_install=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/install}
_bopask_prefix=$(cd "$_bopask_install/bopask_msgs" 2>/dev/null && pwd) || {
  echo "bopask_msgs is not built in $_bopask_install (run: make ros)" >&2; return 1; }
_bopask_site=$(echo "$_bopask_prefix"/lib/python3*/site-packages)
case ":${AMENT_PREFIX_PATH:-}:" in *":$_bopask_prefix:"*) ;; *)
  export AMENT_PREFIX_PATH="$_bopask_prefix${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
case ":${LD_LIBRARY_PATH:-}:" in *":$_bopask_prefix/lib:"*) ;; *)
  export LD_LIBRARY_PATH="$_bopask_prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
case ":${PYTHONPATH:-}:" in *":$_bopask_site:"*) ;; *)
  export PYTHONPATH="$_bopask_site${PYTHONPATH:+:$PYTHONPATH}" ;; esac
unset _bopask_install _bopask_prefix _bopask_site
