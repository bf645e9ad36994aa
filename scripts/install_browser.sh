#!/usr/bin/env bash
# Chromium and its WebDriver for the browser tests (tests/*/test_browser.py); a no-op when both are present or
# when not root (the tests then skip and say why). Debian / Ubuntu: apt packages chromium + chromium-driver,
# without their recommended packages.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if { have chromium || have chromium-browser || have google-chrome; } && have chromedriver; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! have apt-get; then
  echo "install_browser.sh: chromium/chromedriver missing and not root with apt-get; browser tests will skip" >&2
  exit 0
fi
# Without the recommended packages (avahi, udev, cups helpers, ...): 26 packages, about 440 MB on disk.
echo "install_browser.sh: installing Debian's chromium and chromium-driver for the browser tests (apt, no" \
  "recommended packages; about 440 MB)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version && chromedriver --version
