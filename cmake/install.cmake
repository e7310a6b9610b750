# cmake --install puts headers, the static libraries and a package config in the
# prefix, so an outside project can find_package(fiberloop CONFIG REQUIRED).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS fiberloop fiberloop_runtime fiberloop_fibers
        EXPORT fiberloopTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/ ${PROJECT_SOURCE_DIR}/fibers/include/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT fiberloopTargets NAMESPACE fiberloop:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fiberloop)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/fiberloopConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/fiberloopConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fiberloop)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/fiberloopConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/fiberloopConfig.cmake ${PROJECT_BINARY_DIR}/fiberloopConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fiberloop)
