#!/usr/bin/env bash
# System packages edgefuse's tests and demo use, installed only when missing:
#   libportaudio2      PortAudio for sounddevice (the microphone source)
#   pulseaudio, libasound2-plugins   the paced virtual microphone the microphone tests capture from (a private
#                      PulseAudio daemon with a 48 kHz stereo pipe source, reached through ALSA's pulse plugin)
#   ffmpeg             writes the video files the camera tests read
#   chromium, chromium-driver   the headless browser the monitor page is tested in
set -euo pipefail
need=()
[ -e /usr/lib/x86_64-linux-gnu/libportaudio.so.2 ] || ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need+=(libportaudio2)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v pulseaudio >/dev/null || need+=(pulseaudio)
ls /usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so >/dev/null 2>&1 || need+=(libasound2-plugins)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]}; run as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
