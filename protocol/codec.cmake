# Generator rules for the Kafka codec (included by protocol/CMakeLists.txt).
# protocol/gen/kafkagen.py turns every protocol/schema/*.schema into C at build time; the output
# lives only in the build tree, under ${LM_PROTOCOL_GENERATED_DIR}/protocol/.
#   kafka_<schema>.c/.h   messages of one schema file (added to lm_protocol)
#   kafka_api.c/.h        kafka_api_table[] and generic per-key entry points (lm_protocol)
#   kafka_messages.h      includes every message header
#   kafka_sample.c/.h     test-only sample fillers (library lm_protocol_sample)
find_package(Python3 REQUIRED COMPONENTS Interpreter)

file(GLOB LM_CODEC_SCHEMAS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/schema/*.schema)
list(SORT LM_CODEC_SCHEMAS)
set(LM_CODEC_GEN ${CMAKE_CURRENT_SOURCE_DIR}/gen/kafkagen.py)
set(LM_CODEC_OUT ${LM_PROTOCOL_GENERATED_DIR}/protocol)

# The generator names its outputs after the schema files (it checks that each file is named
# after its api), so the list is known without running it at configure time.
set(lm_codec_outputs ${LM_CODEC_OUT}/kafka_api.c ${LM_CODEC_OUT}/kafka_api.h
    ${LM_CODEC_OUT}/kafka_messages.h ${LM_CODEC_OUT}/kafka_sample.c
    ${LM_CODEC_OUT}/kafka_sample.h)
set(lm_codec_sources ${LM_CODEC_OUT}/kafka_api.c)
foreach(schema ${LM_CODEC_SCHEMAS})
  get_filename_component(stem ${schema} NAME_WE)
  list(APPEND lm_codec_outputs ${LM_CODEC_OUT}/kafka_${stem}.c ${LM_CODEC_OUT}/kafka_${stem}.h)
  list(APPEND lm_codec_sources ${LM_CODEC_OUT}/kafka_${stem}.c)
endforeach()

add_custom_command(
  OUTPUT ${lm_codec_outputs}
  COMMAND ${Python3_EXECUTABLE} ${LM_CODEC_GEN} -q --out ${LM_PROTOCOL_GENERATED_DIR}
          ${LM_CODEC_SCHEMAS}
  DEPENDS ${LM_CODEC_GEN} ${CMAKE_CURRENT_SOURCE_DIR}/gen/kafkagen_emit.py ${LM_CODEC_SCHEMAS}
  COMMENT "kafkagen: generating the Kafka codec from ${CMAKE_CURRENT_SOURCE_DIR}/schema"
  VERBATIM)
add_custom_target(lm_codec_generated DEPENDS ${lm_codec_outputs})

list(APPEND LM_PROTOCOL_GENERATED ${lm_codec_sources})
# The codec alone (generated messages + runtime), for targets that compile it with their own
# instrumentation (tests/fuzz/codec builds it with -fsanitize=fuzzer-no-link).
set_property(GLOBAL PROPERTY LM_CODEC_SOURCES ${lm_codec_sources}
             ${CMAKE_CURRENT_SOURCE_DIR}/kafka_rt.c)

# Test-only: kafka_<msg>_fill_sample() for round-trip tests and the fuzz corpus.
add_library(lm_protocol_sample STATIC ${LM_CODEC_OUT}/kafka_sample.c)
target_link_libraries(lm_protocol_sample PUBLIC lm_protocol)
add_dependencies(lm_protocol_sample lm_codec_generated)
