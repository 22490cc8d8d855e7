# nrm_embed_migrations(NAME DIR OUT): compiles every DIR/*.sql (sorted by name) into OUT, a C file
# defining `const nrm_migration_t NAME_migrations[]` and `const size_t NAME_migrations_count`, so
# a service carries its schema with it and needs no files at run time.
function(nrm_embed_migrations name dir out)
  file(GLOB sql_files CONFIGURE_DEPENDS ${dir}/*.sql)
  list(SORT sql_files)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DNAME=${name} -DOUT=${out} "-DFILES=${sql_files}"
            -P ${PROJECT_SOURCE_DIR}/common/embed_migrations_run.cmake
    DEPENDS ${sql_files} ${PROJECT_SOURCE_DIR}/common/embed_migrations_run.cmake
    COMMENT "embedding ${name} migrations"
    VERBATIM)
endfunction()
