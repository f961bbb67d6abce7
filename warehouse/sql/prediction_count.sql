-- How many predictions the warehouse holds for one task.
select count(*) from predictions where task = ?
