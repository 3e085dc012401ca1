# A PostgreSQL cluster for tests, started once per ctest run.
#
#   include(${PROJECT_SOURCE_DIR}/tests/support/postgres_fixture.cmake)
#   licensing_add_postgres_fixture()
#   set_tests_properties(my_test PROPERTIES ${LICENSING_POSTGRES_TEST_PROPERTIES})
#   gtest_discover_tests(my_gtest PROPERTIES ${LICENSING_POSTGRES_TEST_PROPERTIES})
#
# A test with these properties runs after postgres_start and finds the connection URL
# in the file named by the environment variable LICENSING_TEST_PG_URL_FILE. When the
# cluster cannot start, ctest reports every such test as failed, not skipped.

set(LICENSING_POSTGRES_FIXTURE_DIR "${CMAKE_BINARY_DIR}/tests/postgres-fixture")
set(LICENSING_POSTGRES_TEST_PROPERTIES
  FIXTURES_REQUIRED postgres
  ENVIRONMENT "LICENSING_TEST_PG_URL_FILE=${LICENSING_POSTGRES_FIXTURE_DIR}/url"
)

# Registers the tests postgres_start (fixture setup) and postgres_stop (fixture
# cleanup); calling it again from another directory does nothing.
function(licensing_add_postgres_fixture)
  get_property(added GLOBAL PROPERTY LICENSING_POSTGRES_FIXTURE_ADDED)
  if(added)
    return()
  endif()
  set_property(GLOBAL PROPERTY LICENSING_POSTGRES_FIXTURE_ADDED TRUE)

  set(script "${PROJECT_SOURCE_DIR}/tests/support/pg_cluster.sh")
  add_test(NAME postgres_start COMMAND "${script}" start "${LICENSING_POSTGRES_FIXTURE_DIR}")
  set_tests_properties(postgres_start PROPERTIES FIXTURES_SETUP postgres TIMEOUT 120)
  add_test(NAME postgres_stop COMMAND "${script}" stop "${LICENSING_POSTGRES_FIXTURE_DIR}")
  set_tests_properties(postgres_stop PROPERTIES FIXTURES_CLEANUP postgres TIMEOUT 60)
endfunction()
