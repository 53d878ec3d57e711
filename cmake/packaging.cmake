# Installed documentation, and the Debian package (CPack's DEB generator).
#
# Why CPack and not a debian/ directory: the package is built from the same
# install() rules as `make install` and the rockspec, so the three ways in
# cannot ship different files; the version is project(VERSION) itself (a
# debian/changelog would be a second copy of it); and nothing beyond
# dpkg-dev is needed to build it. dpkg-shlibdeps still computes Depends.
# PM_DEB adds what Debian policy wants only in a package: a gzipped man
# page, copyright and changelog under /usr/share/doc/procrun.

option(PM_DEB "Install the files Debian policy asks of a .deb (make deb sets it)" OFF)
set(PM_MAINTAINER "procrun maintainers <maintainers@users.noreply.b-seed-7f98591a.example>")

# The one version number reaches the page's header here, with the date of
# the build (SOURCE_DATE_EPOCH when set: reproducible).
string(TIMESTAMP PM_MAN_DATE "%Y-%m-%d" UTC)
configure_file(doc/procrun.1 ${CMAKE_BINARY_DIR}/procrun.1 @ONLY)

if(PM_DEB)
  set(PM_DOC_DIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/procrun)
  # Reproducible: gzip -n, and a date that honours SOURCE_DATE_EPOCH.
  string(TIMESTAMP PM_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
  configure_file(cmake/deb/changelog.in ${CMAKE_BINARY_DIR}/deb/changelog @ONLY)
  foreach(f procrun.1 changelog)
    if(f STREQUAL "procrun.1")
      set(src ${CMAKE_BINARY_DIR}/procrun.1)
    else()
      set(src ${CMAKE_BINARY_DIR}/deb/changelog)
    endif()
    add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/deb/${f}.gz
      COMMAND sh -c "gzip -9n -c \"$1\" > \"$2\"" sh ${src} ${CMAKE_BINARY_DIR}/deb/${f}.gz
      DEPENDS ${src} VERBATIM)
  endforeach()
  add_custom_target(deb_docs ALL DEPENDS ${CMAKE_BINARY_DIR}/deb/procrun.1.gz
                    ${CMAKE_BINARY_DIR}/deb/changelog.gz)
  install(FILES ${CMAKE_BINARY_DIR}/deb/procrun.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  install(FILES ${CMAKE_BINARY_DIR}/deb/changelog.gz cmake/deb/copyright
          DESTINATION ${PM_DOC_DIR})
  # As dh_strip: no debug symbols, no .comment/.note (CPACK_STRIP_FILES
  # runs a bare `strip`, which keeps them).
  install(CODE "
    foreach(f bin/procrun ${LUA_CMOD_DIR}/procmon.so)
      execute_process(COMMAND ${CMAKE_STRIP} --remove-section=.comment --remove-section=.note
                      --strip-unneeded \$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/\${f}
                      COMMAND_ERROR_IS_FATAL ANY)
    endforeach()")
  set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
      GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
else()
  install(FILES ${CMAKE_BINARY_DIR}/procrun.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME procrun)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT ${PM_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Lua 5.4 + libuv process runner and monitor")
# Lines of at most 80 columns; CPack indents them and turns "" into " .".
string(JOIN "\n" CPACK_PACKAGE_DESCRIPTION
  "procrun runs Lua 5.4 scripts that spawn processes, capture or stream their"
  "output, enforce timeouts and run many at once with a concurrency limit."
  "Processes can be monitored: their records persist in a private state"
  "directory, so that any process can list them (procrun ps), signal them"
  "(procrun kill) or read their logs (procrun logs). A file cache with TTL,"
  "safe across processes, keeps state between runs."
  ""
  "It starts fast enough for Claude Code statusline and hook commands, and"
  "has helpers to read their JSON input and answer them."
  ""
  "The same primitives are the procmon module for a stock lua5.4"
  "(require 'procmon'), installed on Debian's Lua 5.4 module path.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# procmon.so is for lua5.4 but does not link liblua, so shlibdeps cannot see it.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS lua5.4)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR})
include(CPack)
