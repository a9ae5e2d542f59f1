# Built by `npm run build:native` (node-gyp rebuild -C native). It lives in native/ on purpose:
# a binding.gyp at the package root would make npm add an implicit `node-gyp rebuild` install
# script for everyone who installs guestmem, and installs must not need a compiler.
{
  "targets": [
    {
      "target_name": "guestmem",
      "sources": ["guestmem.c", "kvm.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
