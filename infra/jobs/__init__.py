"""Jobs: ids and job directories, media probes and clips, the pipeline that runs their stages, the stage runners."""
