# abdelta A/B slot selection for U-Boot, with a boot counter (compile with
# `mkimage -A arm64 -T script -C none -d boot.cmd boot.scr`).
#
# BOOT_ORDER lists the slots, first choice first; BOOT_<slot>_LEFT counts the attempts left.
# This script boots the first slot with attempts left and spends one before booting it.
# abdelta install puts a verified slot first with one attempt; abdelta mark-good, run from
# it, gives it back the configured attempts (device.toml boot.attempts). A slot that never
# comes up confirmed has none left after one boot, and the next boot takes the other slot.

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv abdelta_slot
for slot in ${BOOT_ORDER}; do
  if test -z "${abdelta_slot}"; then
    if test "${slot}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv abdelta_slot A
      setenv abdelta_part 2
    elif test "${slot}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv abdelta_slot B
      setenv abdelta_part 3
    fi
  fi
done

if test -z "${abdelta_slot}"; then
  echo "abdelta: no slot has attempts left; resetting the counters"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  saveenv
  reset
fi

saveenv
# Adapt the device, partitions and load addresses to the board. abdelta.slot=NAME is how
# the running system knows which slot it booted.
setenv bootargs "${bootargs} root=/dev/mmcblk0p${abdelta_part} rootwait ro abdelta.slot=${abdelta_slot}"
load mmc 0:${abdelta_part} ${kernel_addr_r} /boot/Image
load mmc 0:${abdelta_part} ${fdt_addr_r} /boot/station.dtb
booti ${kernel_addr_r} - ${fdt_addr_r}
