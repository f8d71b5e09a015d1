# gateway/sources-admin.cmake — the admin-side gateway sources (ledger client,
# API keys, admin API, JSON helpers) and their unit tests. Included by
# gateway/CMakeLists.txt, which adds GW_ADMIN_SOURCES to gw_core, links
# GW_ADMIN_LIBS to it and registers each test as
#   cg_add_unit_test(<t> <t>.c LIBS gw_core)
find_package(ZLIB REQUIRED) # crc32 for the API key checksum (gw_keys.c)
set(GW_ADMIN_SOURCES gw_ledger.c gw_keys.c gw_admin.c gw_json.c)
set(GW_ADMIN_LIBS cg_proto cg_http cg_common nng::nng PkgConfig::UV PkgConfig::CJSON
    PkgConfig::OPENSSL ZLIB::ZLIB m)
set(GW_ADMIN_TESTS keys_test admin_json_test ledger_client_test admin_api_test)
