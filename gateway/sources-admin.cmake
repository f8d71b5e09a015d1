# gateway/sources-admin.cmake — the admin-side gateway sources (ledger client,
# API keys, admin API, JSON helpers; gw_notify.c: the workers' subscriber to
# definition-change notices and pricing reloads) and their unit tests. Included by
# gateway/CMakeLists.txt, which adds GW_ADMIN_SOURCES to gw_core, links
# GW_ADMIN_LIBS to it and registers each test as
#   cg_add_unit_test(<t> <t>.c LIBS gw_core)
find_package(ZLIB REQUIRED) # crc32 for the API key checksum (gw_keys.c)
set(GW_ADMIN_SOURCES gw_ledger.c gw_keys.c gw_json.c
    gw_admin.c gw_admin_io.c gw_admin_orgs.c gw_admin_keys.c gw_admin_groups.c
    gw_admin_customers.c gw_admin_usage.c gw_admin_pricing.c gw_notify.c)
set(GW_ADMIN_LIBS cg_proto cg_http cg_common nng::nng PkgConfig::UV PkgConfig::CJSON
    PkgConfig::OPENSSL ZLIB::ZLIB m)
set(GW_ADMIN_TESTS keys_test admin_json_test ledger_client_test admin_cache_test)

# admin_api_test drives the admin API over HTTP against an in-test ledger
# stand-in and against two real capgate-ledger shards, which it starts itself
# from the path below. Registered here (not in GW_ADMIN_TESTS) to pass that path.
cg_add_unit_test(admin_api_test admin_api_test.c LIBS gw_core)
target_sources(admin_api_test PRIVATE admin_test_http.c admin_api_real.c)
target_compile_definitions(admin_api_test PRIVATE
  CG_LEDGER_BIN="$<TARGET_FILE:capgate-ledger>")
add_dependencies(admin_api_test capgate-ledger)
