# Shared helpers for the parts' CMakeLists.txt files.

pkg_check_modules(CMOCKA IMPORTED_TARGET cmocka)

# laminar_add_subdirs(): add every child folder of the current one that has a CMakeLists.txt.
# Lets each area of tests/ and bench/ own a folder without editing a shared list.
function(laminar_add_subdirs)
  file(GLOB children LIST_DIRECTORIES true RELATIVE ${CMAKE_CURRENT_SOURCE_DIR}
       ${CMAKE_CURRENT_SOURCE_DIR}/*)
  list(SORT children)
  foreach(child ${children})
    if(IS_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/${child}
       AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${child}/CMakeLists.txt)
      add_subdirectory(${child})
    endif()
  endforeach()
endfunction()

# laminar_unit_test(NAME SOURCES a.c b.c LIBS lib... [LABELS l...] [TIMEOUT s])
# A cmocka test executable registered with ctest.
function(laminar_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()

# laminar_compat_test(NAME name SCRIPT file.py [IO io...] [TIMEOUT s] [ARGS a...]
#                     [ENVIRONMENT k=v...] [PYTHON interpreter])
# One ctest test per I/O backend (IO, default uring epoll): ${NAME}_${io} runs
# `PYTHON SCRIPT --io ${io} ARGS` with label compat. SCRIPT is relative to the current source
# folder unless absolute; ENVIRONMENT defaults to LAMINAR_BIN=<the laminar binary>, TIMEOUT to
# 300 s and PYTHON to Debian's /usr/bin/python3 (the one with the client packages).
function(laminar_compat_test)
  cmake_parse_arguments(T "" "NAME;SCRIPT;TIMEOUT;PYTHON" "IO;ARGS;ENVIRONMENT" ${ARGN})
  if(NOT T_IO)
    set(T_IO uring epoll)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  if(NOT T_PYTHON)
    set(T_PYTHON /usr/bin/python3)
  endif()
  if(NOT T_ENVIRONMENT)
    set(T_ENVIRONMENT "LAMINAR_BIN=$<TARGET_FILE:laminar>")
  endif()
  set(script ${T_SCRIPT})
  if(NOT IS_ABSOLUTE ${script})
    set(script ${CMAKE_CURRENT_SOURCE_DIR}/${script})
  endif()
  foreach(io ${T_IO})
    add_test(NAME ${T_NAME}_${io} COMMAND ${T_PYTHON} ${script} --io ${io} ${T_ARGS})
    set_tests_properties(${T_NAME}_${io} PROPERTIES
      LABELS compat TIMEOUT ${T_TIMEOUT} ENVIRONMENT "${T_ENVIRONMENT}")
  endforeach()
endfunction()
