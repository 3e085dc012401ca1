# Runs provisioner_test with an empty request-log directory, so the checks that read the
# logs see this run only. Arguments after -P: the test binary, then the log directory.
set(binary ${CMAKE_ARGV3})
set(log_directory ${CMAKE_ARGV4})
file(REMOVE_RECURSE ${log_directory})
file(MAKE_DIRECTORY ${log_directory})
execute_process(COMMAND ${binary} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "provisioner_test failed: ${result}")
endif()
